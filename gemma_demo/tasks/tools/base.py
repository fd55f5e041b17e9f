"""A tool: a plain Python function, its JSON schema, and how one call of it is run and reported.

Tools are plain functions with Google-style docstrings; `transformers.utils.get_json_schema`
turns them into the schema the chat template renders as `<|tool>declaration:…<tool|>`.
What a tool needs beyond its arguments (the model, the conversation's uploads, a cancel
flag) comes from `ToolContext`, set for the worker thread that runs the call, so the
function's signature shows the model only its own arguments.
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gemma_demo.engine.base import Backend, Stats
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.engine.tool_syntax import ToolCall
from gemma_demo.errors import GemmaDemoError

DEFAULT_TOOL_TIMEOUT_S = 60.0
# A result longer than this (as text) is cut before it reaches the model's context.
MAX_RESULT_CHARS = 8000


class ToolError(GemmaDemoError):
    """A tool could not do what it was asked; the message goes back to the model."""


@dataclass(frozen=True)
class ToolOutput:
    """What a tool returns: data for the model, pictures for the person reading the chat, and
    the figures of the model call it ran (its task's generation), if it ran one."""

    data: dict[str, Any]
    images: tuple[Any, ...] = ()
    stats: Stats | None = None


@dataclass(frozen=True)
class ToolContext:
    """The conversation a call belongs to: its model, uploads, token cap and Stop flag.

    Not the chat's settings: a tool runs its task with the task's own defaults (OCR's image
    budget, greedy extraction), so the chat's system prompt, thinking and sampling stay in the
    chat. Only the visitor's `max_new_tokens` follows the call, as a ceiling: it is the one
    bound a visitor sets on what a generation may cost, and a tool call is one more generation.
    """

    backend: Backend | None = None
    attachments: tuple[Path, ...] = ()
    max_new_tokens: int | None = None  # None: the task's own limit
    cancel: threading.Event = field(default_factory=threading.Event)

    def task_settings(self, defaults: GenerationSettings, **changes: Any) -> GenerationSettings:
        """A task's `defaults` with the call's own `changes`, its token limit held under the cap."""
        limit = min(defaults.max_new_tokens, self.max_new_tokens or defaults.max_new_tokens)
        return defaults.with_changes(max_new_tokens=limit, **changes)


_CONTEXT: contextvars.ContextVar[ToolContext] = contextvars.ContextVar("tool_context")


def find_upload(uploads: tuple[Path, ...], name: str | int) -> Path | None:
    """The upload called `name`: its number (0 is the first) or its file name; None if none is."""
    key = str(name).strip()
    # No longer than the count itself: `int()` refuses strings of thousands of digits.
    if key.isdecimal() and len(key) <= len(str(len(uploads))) and int(key) < len(uploads):
        return uploads[int(key)]
    return next((path for path in uploads if path.name == key), None)


def upload_listing(uploads: tuple[Path, ...]) -> str:
    """`0: a.png, 1: b.wav`: what the model may name."""
    return ", ".join(f"{index}: {path.name}" for index, path in enumerate(uploads))


def current_context() -> ToolContext:
    """The context of the call being run (only inside a tool)."""
    try:
        return _CONTEXT.get()
    except LookupError:
        raise ToolError("This tool runs only inside a conversation.") from None


@dataclass(frozen=True)
class Tool:
    """A callable the model may use, with the JSON schema the chat template declares."""

    name: str
    function: Callable[..., Any]
    declared_schema: dict[str, Any] | None = None  # given by its source (an MCP server)

    @classmethod
    def from_function(cls, function: Callable[..., Any]) -> Tool:
        return cls(function.__name__, function)

    @property
    def schema(self) -> dict[str, Any]:
        """The declaration the chat template renders; a built-in's comes from its docstring.

        Built when first asked for: `get_json_schema` imports transformers (and torch), which
        would hold up the page's start by seconds.
        """
        if self.declared_schema is not None:
            return self.declared_schema
        from transformers.utils import get_json_schema

        return get_json_schema(self.function)


@dataclass(frozen=True)
class ToolResult:
    """One finished call: what went to the model (`response`) and what the chat shows."""

    call: ToolCall
    response: dict[str, Any]
    images: tuple[Any, ...] = ()
    seconds: float = 0.0
    stats: Stats | None = None  # the tool's own model call, shown in its block of the chat

    @property
    def failed(self) -> bool:
        return "error" in self.response

    def to_json(self) -> dict[str, Any]:
        return {"call": self.call.to_json(), "response": self.response, "seconds": round(self.seconds, 3),
                "images": len(self.images)}


def start_call(tool: Tool, call: ToolCall, context: ToolContext) -> Future:
    """Run the call in a worker thread of its own; the future holds a `ToolOutput` or an error.

    A daemon thread, not a pool: a call that overruns its timeout is abandoned (its Stop flag
    set, so the app's own tasks stop their model) and must not hold up the next one.
    """
    future: Future = Future()

    def work() -> None:
        _CONTEXT.set(context)
        try:
            future.set_result(_as_output(tool.function(**call.arguments)))
        except BaseException as error:  # noqa: BLE001 - handed to the loop, which tells the model
            future.set_exception(error)

    threading.Thread(target=work, name=f"tool-{tool.name}", daemon=True).start()
    return future


def _as_output(value: Any) -> ToolOutput:
    if isinstance(value, ToolOutput):
        return value
    return ToolOutput(value if isinstance(value, dict) else {"result": value})


def error_result(call: ToolCall, message: str, started: float) -> ToolResult:
    return ToolResult(call, {"error": message}, seconds=time.perf_counter() - started)


def capped(data: dict[str, Any], limit: int = MAX_RESULT_CHARS) -> dict[str, Any]:
    """`data`, or its text cut to `limit` characters with a note, when it is longer."""
    text = json.dumps(data, ensure_ascii=False, default=str)
    if len(text) <= limit:
        return data
    return {"truncated_result": text[:limit], "note": f"The result was cut to {limit} of {len(text)} characters."}
