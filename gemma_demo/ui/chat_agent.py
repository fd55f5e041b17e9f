"""Agent mode and JSON answers in the Chat tab: the agent loop's steps as chat messages.

Each tool call shows as its own collapsed message ("Used detect_objects · 0.41 s", with its
arguments and result), its pictures as messages after it, and the final answer last (as
JSON when a schema was given). The tools see only this conversation's uploads: the history
reaching here has passed `session_files.require_own`, and the new message's files Gradio's
upload check. Earlier turns' tool messages are metadata messages, so `model_messages`
leaves them out of the next prompt, as it does earlier reasoning.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemma_demo.engine.base import Backend
from gemma_demo.engine.json_schema import check_schema
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.errors import InvalidInputError
from gemma_demo.tasks.agent import AgentOptions, AgentStep, StepKind, run_agent
from gemma_demo.tasks.chat import answer_messages, measure_context, require_room
from gemma_demo.tasks.conversation import ChatMessage, ChatOptions, file_part, model_messages, text_part
from gemma_demo.tasks.tools.base import Tool, ToolContext
from gemma_demo.tasks.tools.catalog import BUILTIN_TOOLS, toolbox
from gemma_demo.ui.files import picture_file, request_folder
from gemma_demo.ui.session_files import SessionFiles, file_paths, into_cache

DEFAULT_TOOLS = ("detect_objects", "point_at", "read_text", "calculate", "current_time")
DEFAULT_SCHEMA = json.dumps({
    "type": "object",
    "properties": {"answer": {"type": "string"}, "confidence": {"type": "string", "enum": ["low", "medium", "high"]}},
    "required": ["answer", "confidence"],
}, indent=2)
# A video tool returns up to 16 frames; the chat shows the first few.
MAX_PICTURES_PER_CALL = 6


@dataclass(frozen=True)
class AgentChoice:
    """What the page or the API asked for: tools (none for a JSON answer alone), steps, schema."""

    tools: tuple[str, ...]
    options: AgentOptions


def agent_choice(agent: bool, tools: Iterable[str] | None, max_steps: float, json_answer: bool,
                 json_schema: str) -> AgentChoice | None:
    """None for a plain chat turn; otherwise the loop's settings, checked before anything runs."""
    if not agent and not json_answer:
        return None
    names = tuple(tools or ()) if agent else ()
    if agent and not names:
        raise InvalidInputError("Choose at least one tool for the agent, or switch Agent off.")
    schema = parse_schema(json_schema) if json_answer else None
    return AgentChoice(names, AgentOptions(max_steps=int(max_steps), json_schema=schema))


def parse_schema(text: str) -> dict[str, Any]:
    try:
        schema = json.loads(text or "")
    except json.JSONDecodeError as error:
        raise InvalidInputError(f"The JSON answer schema is not JSON ({error.msg}, line {error.lineno}).") from None
    return check_schema(schema)


def agent_turn(
    backend: Backend, settings: GenerationSettings, asked: list[ChatMessage], options: ChatOptions,
    choice: AgentChoice, owned: SessionFiles, extra_tools: tuple[Tool, ...] = (),
) -> Iterator[tuple[list[ChatMessage], str, str, SessionFiles]]:
    """Stream the conversation with the loop's steps: (history, context meter, status, session files)."""
    tools = toolbox(choice.tools, extra=extra_tools)
    attachments = tuple(Path(path) for path in file_paths(m for m in asked if m["role"] == "user"))
    messages = model_messages(asked, backend.capabilities, backend.name, options)
    if tools.tools and attachments:
        messages[-1]["content"].append(text_part(file_listing(attachments)))
    context = measure_context(backend, messages, settings)
    require_room(context, settings, backend.name)
    done: list[ChatMessage] = []
    noted_round = 0
    steps = run_agent(backend, messages, tools, settings, ToolContext(backend, settings, attachments), choice.options)
    for step in steps:
        live: list[ChatMessage] = []
        if step.kind is StepKind.TOOL:
            if noted_round != step.round:  # the round's own words and reasoning, once, before its calls
                noted_round = step.round
                done += [m for m in answer_messages(step.update) if m["content"]]
            pictures = cached_pictures(step.result.images[:MAX_PICTURES_PER_CALL])
            owned = owned | set(pictures)
            done += [tool_message(step), *({"role": "assistant", "content": [file_part(p)]} for p in pictures)]
        elif step.kind is StepKind.TOOL_RUNNING:
            live = [{"role": "assistant", "content": _call_text(step), "metadata": {
                "title": f"Using {step.call.name}…", "status": "pending"}}]
        elif step.kind is StepKind.MODEL:
            live = answer_messages(step.update)
        else:
            live = answer_messages(dataclasses.replace(step.update, answer=final_text(step), done=True))
        yield [*asked, *done, *live], context.meter(), step.update.stats.summary(), owned


def file_listing(attachments: tuple[Path, ...]) -> str:
    """The model must know what it may name: the attachments by number and name."""
    return "Attached files:\n" + "\n".join(f"{index}: {path.name}" for index, path in enumerate(attachments))


def tool_message(step: AgentStep) -> ChatMessage:
    result = step.result
    title = f"{step.call.name} failed" if result.failed else f"Used {step.call.name}"
    response = json.dumps(result.response, ensure_ascii=False, indent=2, default=str)
    return {
        "role": "assistant",
        "content": f"{_call_text(step)}\n\nResult:\n```json\n{response}\n```\n\nTime: {result.seconds:.2f} s",
        "metadata": {"title": f"{title} · {result.seconds:.2f} s", "status": "done", "duration": round(result.seconds, 3)},
    }


def _call_text(step: AgentStep) -> str:
    arguments = json.dumps(step.call.arguments, ensure_ascii=False, indent=2, default=str)
    return f"Arguments:\n```json\n{arguments}\n```"


def final_text(step: AgentStep) -> str:
    """The answer; as pretty JSON when it matched the schema; with the loop's message when it ended early."""
    if step.json_answer is not None:
        return f"```json\n{json.dumps(step.json_answer, ensure_ascii=False, indent=2)}\n```"
    return "\n\n".join(part for part in (step.update.answer.strip(), step.message) if part)


def cached_pictures(images: Iterable[Any]) -> list[str]:
    """The tool's pictures as files in Gradio's cache, which this session may then name."""
    with request_folder() as folder:
        return [into_cache(picture_file(image, folder / f"tool-picture-{n}.png")) for n, image in enumerate(images)]


def tool_names(extra_tools: Iterable[Tool] = ()) -> list[str]:
    return [*BUILTIN_TOOLS, *(tool.name for tool in extra_tools)]
