"""Agent mode and JSON answers in the Chat tab: the agent loop's steps as chat messages.

Each tool call shows as its own collapsed message ("Used detect_objects · 0.41 s", with its
arguments, result and the figures of the model call it ran), its pictures as messages after
it, and the final answer last (as JSON when a schema was given). The stats line adds up the
whole turn: every round of the loop and every tool's model call. The tools see only this
conversation's uploads: the history reaching here has passed `session_files.require_own`,
and the new message's files Gradio's upload check. Earlier turns' tool messages are metadata messages, so `model_messages`
leaves them out of the next prompt, as it does earlier reasoning.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gemma_demo.engine.base import Backend, Message, Stats, Update
from gemma_demo.engine.json_schema import read_schema
from gemma_demo.engine.registry import ModelCapabilities
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.errors import InvalidInputError
from gemma_demo.tasks.agent import AgentOptions, AgentStep, StepKind, run_agent
from gemma_demo.tasks.chat import answer_messages, measure_context, require_room
from gemma_demo.tasks.conversation import ChatMessage, ChatOptions, file_part, model_messages, text_part
from gemma_demo.tasks.tools.base import Tool, ToolContext, ToolResult
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
    schema = read_schema(json_schema) if json_answer else None
    return AgentChoice(names, AgentOptions(max_steps=int(max_steps), json_schema=schema))


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
    tool_context = ToolContext(backend, attachments, settings.max_new_tokens)  # tasks' own settings, under the cap
    rounds, tool_stats = MeteredBackend(backend), Stats()
    steps = run_agent(rounds, messages, tools, settings, tool_context, choice.options)
    for step in steps:
        live: list[ChatMessage] = []
        if step.kind is StepKind.TOOL:
            if noted_round != step.round:  # the round's own words and reasoning, once, before its calls
                noted_round = step.round
                done += [m for m in answer_messages(step.update) if m["content"]]
            pictures = cached_pictures(step.result.images[:MAX_PICTURES_PER_CALL])
            owned = owned | set(pictures)
            done += [tool_message(step), *({"role": "assistant", "content": [file_part(p)]} for p in pictures)]
            tool_stats = tool_stats.followed_by(step.result.stats or Stats())
        elif step.kind is StepKind.TOOL_RUNNING:
            live = [{"role": "assistant", "content": _call_text(step), "metadata": {
                "title": f"Using {step.call.name}…", "status": "pending"}}]
        elif step.kind is StepKind.MODEL:
            live = answer_messages(step.update)
        else:
            live = answer_messages(dataclasses.replace(step.update, answer=final_text(step), done=True))
        yield [*asked, *done, *live], context.meter(), rounds.stats.followed_by(tool_stats).summary(), owned


@dataclass
class MeteredBackend:
    """The turn's backend, adding up the figures of every answer the loop streams from it.

    Each round is a `stream` of its own (and a JSON answer after tools one more), each with
    its own figures; the turn's stats line is their sum. The tools' own model calls go
    through the backend itself (`ToolContext`) and come back with their results.
    """

    backend: Backend
    finished: Stats = field(default_factory=Stats)
    current: Stats = field(default_factory=Stats)

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def capabilities(self) -> ModelCapabilities:
        return self.backend.capabilities

    @property
    def stats(self) -> Stats:
        return self.finished.followed_by(self.current)

    def stream(self, messages: list[Message], settings: GenerationSettings) -> Iterator[Update]:
        try:
            with closing(self.backend.stream(messages, settings)) as updates:
                for update in updates:
                    self.current = update.stats
                    yield update
        finally:
            self.finished, self.current = self.stats, Stats()


def file_listing(attachments: tuple[Path, ...]) -> str:
    """The model must know what it may name: the attachments by number and name."""
    return "Attached files:\n" + "\n".join(f"{index}: {path.name}" for index, path in enumerate(attachments))


def tool_message(step: AgentStep) -> ChatMessage:
    result = step.result
    title = f"{step.call.name} failed" if result.failed else f"Used {step.call.name}"
    response = json.dumps(result.response, ensure_ascii=False, indent=2, default=str)
    return {
        "role": "assistant",
        "content": f"{_call_text(step)}\n\nResult:\n```json\n{response}\n```\n\n{_figures(result)}",
        "metadata": {"title": f"{title} · {result.seconds:.2f} s", "status": "done", "duration": round(result.seconds, 3)},
    }


def _figures(result: ToolResult) -> str:
    """The call's time, and the figures of the model call it ran, if it ran one."""
    model = f" · {result.stats.summary()}" if result.stats is not None else ""
    return f"Time: {result.seconds:.2f} s{model}"


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
