"""The agent loop: the model calls tools, reads their results, and calls again until it answers.

Each round is one `backend.stream` with the tools declared. A call that comes back is run in
a worker thread with a timeout; its result (or an error: unknown tool, bad arguments, a
failure, a timeout) goes back as Gemma 4's template expects, an assistant message with
`tool_calls` and `tool_responses` that keeps its reasoning, so the next round continues the
same model turn. A call cut off by the token limit is reported and never run. While a tool
runs the loop yields every `TOOL_POLL_S`, so closing the generator (Stop) lands at once; it
sets the call's cancel flag, which the app's own tasks check between tokens.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import jsonschema

from gemma_demo.engine.base import Backend, Message, Update
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.engine.tool_syntax import ToolCall
from gemma_demo.errors import GemmaDemoError, InvalidInputError
from gemma_demo.tasks.tools.base import (
    DEFAULT_TOOL_TIMEOUT_S,
    ToolContext,
    ToolResult,
    capped,
    error_result,
    start_call,
)
from gemma_demo.tasks.tools.catalog import Toolbox

DEFAULT_MAX_STEPS = 5
MAX_STEPS_LIMIT = 20
TOOL_POLL_S = 0.2


class StepKind(str, enum.Enum):
    MODEL = "model"  # the model's text so far in this round
    TOOL_RUNNING = "tool_running"  # a call is still running
    TOOL = "tool"  # a call finished: its result
    ANSWER = "answer"  # the last step


@dataclass(frozen=True)
class AgentOptions:
    max_steps: int = DEFAULT_MAX_STEPS
    tool_timeout_s: float = DEFAULT_TOOL_TIMEOUT_S
    json_schema: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.max_steps <= MAX_STEPS_LIMIT:
            raise InvalidInputError(f"The number of agent steps must be between 1 and {MAX_STEPS_LIMIT}.")


@dataclass(frozen=True)
class AgentStep:
    """One thing that happened; `round` counts the model's calls (1-based)."""

    kind: StepKind
    round: int
    update: Update
    call: ToolCall | None = None
    result: ToolResult | None = None
    message: str = ""
    json_answer: Any = None

    @property
    def done(self) -> bool:
        return self.kind is StepKind.ANSWER

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value, "round": self.round}
        if self.kind in (StepKind.MODEL, StepKind.ANSWER):
            out |= self.update.to_json()
        if self.call is not None:
            out["call"] = self.call.to_json()
        if self.result is not None:
            out |= {"response": self.result.response, "seconds": round(self.result.seconds, 3)}
        if self.message:
            out["message"] = self.message
        if self.kind is StepKind.ANSWER and self.json_answer is not None:
            out["json"] = self.json_answer
        return out


def run_agent(
    backend: Backend,
    messages: list[Message],
    toolbox: Toolbox,
    settings: GenerationSettings,
    context: ToolContext,
    options: AgentOptions = AgentOptions(),
) -> Iterator[AgentStep]:
    """Stream the loop's steps; the last is an `ANSWER`. `messages` end with the user's turn."""
    history = list(messages)
    round_settings = settings.with_changes(tools=toolbox.schemas, json_schema=None if toolbox.tools else options.json_schema)
    for round_number in range(1, options.max_steps + 1):
        update = yield from _model_round(backend, history, round_settings, round_number)
        if not update.tool_calls:
            if options.json_schema is not None and toolbox.tools:
                update = yield from _model_round(
                    backend, history, round_settings.with_changes(json_schema=options.json_schema), round_number
                )
            yield _answer(update, round_number, options.json_schema, settings.max_new_tokens)
            return
        cut = [call for call in update.tool_calls if not call.complete]
        if cut:
            yield AgentStep(StepKind.ANSWER, round_number, update, call=cut[0], message=(
                f"The model's call to {cut[0].name or 'a tool'} was cut off by the token limit and was not run. "
                "Raise the maximum of new tokens and ask again."))
            return
        if round_number == options.max_steps:
            break
        results = []
        for call in update.tool_calls:
            result = yield from _run_call(call, toolbox, context, options.tool_timeout_s, round_number, update)
            results.append(result)
            yield AgentStep(StepKind.TOOL, round_number, update, call=call, result=result)
        history.append(tool_turn(update, results))
    yield AgentStep(StepKind.ANSWER, options.max_steps, update, message=(
        f"Stopped after {options.max_steps} steps: the model still wanted to call "
        f"{', '.join(call.name for call in update.tool_calls)}. Raise the step limit or ask more precisely."))


def tool_turn(update: Update, results: list[ToolResult]) -> Message:
    """The round as Gemma 4's template reads it: calls, their results, and the round's reasoning."""
    message: Message = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"type": "function", "function": {"name": r.call.name, "arguments": r.call.arguments}} for r in results
        ],
        "tool_responses": [{"name": r.call.name, "response": r.response} for r in results],
    }
    if update.reasoning:
        message["reasoning"] = update.reasoning
    return message


def _model_round(
    backend: Backend, history: list[Message], settings: GenerationSettings, round_number: int
) -> Iterator[AgentStep]:
    update = Update()
    with closing(backend.stream(history, settings)) as updates:
        for update in updates:
            if not update.done:
                yield AgentStep(StepKind.MODEL, round_number, update)
    return update


def _run_call(
    call: ToolCall, toolbox: Toolbox, context: ToolContext, timeout_s: float, round_number: int, update: Update
) -> Iterator[AgentStep]:
    """Run one call; every failure becomes an error result the model reads."""
    started = time.perf_counter()
    tool = toolbox.get(call.name)
    if not call.runnable:
        return error_result(call, call.error, started)
    if tool is None:
        return error_result(call, f"Unknown tool {call.name!r}. Available tools: {', '.join(toolbox.names)}.", started)
    call_context = dataclasses.replace(context, cancel=threading.Event())
    future = start_call(tool, call, call_context)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                call_context.cancel.set()
                return error_result(call, f"The tool did not finish within {timeout_s:g} s.", started)
            try:
                output = future.result(timeout=min(TOOL_POLL_S, remaining))
                break
            except FutureTimeout:
                yield AgentStep(StepKind.TOOL_RUNNING, round_number, update, call=call)
    except GeneratorExit:
        call_context.cancel.set()
        raise
    except GemmaDemoError as error:
        return error_result(call, str(error), started)
    except TypeError as error:
        return error_result(call, f"Wrong arguments for {call.name}: {error}", started)
    except Exception as error:  # noqa: BLE001 - any failure of a tool is the model's to read
        return error_result(call, f"{call.name} failed: {type(error).__name__}: {error}", started)
    return ToolResult(call, capped(output.data), output.images, time.perf_counter() - started, output.stats)


def _answer(update: Update, round_number: int, schema: dict[str, Any] | None, max_new_tokens: int) -> AgentStep:
    if schema is None:
        return AgentStep(StepKind.ANSWER, round_number, update)
    cut_at = max_new_tokens if update.stats.new_tokens >= max_new_tokens else None
    try:
        value = validated_json(update.answer, schema, cut_at)
    except InvalidInputError as error:
        return AgentStep(StepKind.ANSWER, round_number, update, message=str(error))
    return AgentStep(StepKind.ANSWER, round_number, update, json_answer=value)


def validated_json(text: str, schema: dict[str, Any], cut_at: int | None = None) -> Any:
    """The answer as JSON that `schema` accepts, or a message; `cut_at` is the token limit when it ended the answer.

    Only then is raising the limit the advice: an answer that ended on its own and does not
    match (a remote model's, or one whose grammar gave up) would only grow longer and still fail.
    """
    try:
        value = json.loads(text)
        jsonschema.validate(value, schema)
    except (json.JSONDecodeError, jsonschema.ValidationError) as error:
        detail = error.msg if isinstance(error, json.JSONDecodeError) else error.message
        if cut_at is not None:
            raise InvalidInputError(
                f"The answer reached the limit of {cut_at:,} new tokens and is not JSON that matches the schema "
                f"({detail}). Raise the maximum of new tokens and ask again.") from None
        raise InvalidInputError(f"The answer is not JSON that matches the schema ({detail}).") from None
    except RecursionError:
        raise InvalidInputError("The answer could not be checked against the schema: checking recursed too deeply "
                                "(an answer nested very deeply, or a $ref that only refers to itself).") from None
    return value
