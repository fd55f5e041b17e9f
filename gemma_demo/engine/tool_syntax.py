"""Read Gemma 4's tool calls out of generated text, and write values in the same syntax.

Gemma 4 calls a tool as `<|tool_call>call:NAME{key:<|"|>text<|"|>,count:3}<tool_call|>`:
JSON-like values with bare keys, and strings between `<|"|>` markers with no escaping (so a
string may hold braces, commas, colons and quotes). transformers 5.24 has no parser for it
(its `parse_response` templates only split reasoning from content; its lax-JSON helper is
private and regex-based) and vLLM's `gemma4` parser runs only inside vLLM, so this is a
small recursive reader. It lives in the engine because the local backend turns the calls
into `Update.tool_calls`, as a remote server does with its own parser.

Reading never raises: a malformed call becomes a `ToolCall` with an `error`, and a call
cut off by the token limit one with `complete=False`; neither is ever executed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

CALL_OPEN = "<|tool_call>"
CALL_CLOSE = "<tool_call|>"
CALL_PREFIX = "call:"
QUOTE = '<|"|>'
MAX_DEPTH = 64

_NAME = re.compile(r"[A-Za-z_][\w.\-]*")
_KEY = re.compile(r"[^:,{}\[\]<\"\s]+")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?")
_JSON_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_WHITESPACE = re.compile(r"\s*")
_CONSTANTS = {"true": True, "false": False, "null": None}


@dataclass(frozen=True)
class ToolCall:
    """One call the model made; only a `complete` call without `error` may be executed."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    complete: bool = True
    error: str = ""

    @property
    def runnable(self) -> bool:
        return self.complete and not self.error

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments, "complete": self.complete, "error": self.error}


@dataclass(frozen=True)
class CallScan:
    """A model text split into its tool calls and the text around them."""

    calls: tuple[ToolCall, ...]
    text: str


class _SyntaxFault(Exception):
    pass


class _Reader:
    def __init__(self, text: str, position: int = 0):
        self.text = text
        self.position = position

    def skip(self) -> None:
        self.position = _WHITESPACE.match(self.text, self.position).end()

    def at(self, token: str) -> bool:
        self.skip()
        return self.text.startswith(token, self.position)

    def expect(self, token: str) -> None:
        if not self.at(token):
            raise _SyntaxFault(f"expected {token!r} at character {self.position}")
        self.position += len(token)

    def value(self, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise _SyntaxFault(f"values nested more than {MAX_DEPTH} deep")
        if self.at(QUOTE):
            return self.string()
        if self.at("{"):
            return self.mapping(depth)
        if self.at("["):
            return self.sequence(depth)
        if self.at('"'):
            return self.json_string()
        if number := _NUMBER.match(self.text, self.position):
            self.position = number.end()
            return _number(number)
        for word, constant in _CONSTANTS.items():
            if self.text.startswith(word, self.position):
                self.position += len(word)
                return constant
        raise _SyntaxFault(f"expected a value at character {self.position}")

    def string(self) -> str:
        start = self.position + len(QUOTE)
        end = self.text.find(QUOTE, start)
        if end < 0:
            raise _SyntaxFault("unterminated string")
        self.position = end + len(QUOTE)
        return self.text[start:end]

    def json_string(self) -> str:
        match = _JSON_STRING.match(self.text, self.position)
        if match is None:
            raise _SyntaxFault("unterminated string")
        self.position = match.end()
        try:
            return json.loads(match[0])
        except ValueError:
            raise _SyntaxFault("a broken quoted string") from None

    def key(self) -> str:
        if self.at(QUOTE):
            return self.string()
        if self.at('"'):
            return self.json_string()
        match = _KEY.match(self.text, self.position)
        if match is None:
            raise _SyntaxFault(f"expected a key at character {self.position}")
        self.position = match.end()
        return match[0]

    def mapping(self, depth: int) -> dict[str, Any]:
        self.expect("{")
        out: dict[str, Any] = {}
        if self.at("}"):
            self.position += 1
            return out
        while True:
            key = self.key()
            self.expect(":")
            out[key] = self.value(depth + 1)
            if self.at("}"):
                self.position += 1
                return out
            self.expect(",")

    def sequence(self, depth: int) -> list[Any]:
        self.expect("[")
        out: list[Any] = []
        if self.at("]"):
            self.position += 1
            return out
        while True:
            out.append(self.value(depth + 1))
            if self.at("]"):
                self.position += 1
                return out
            self.expect(",")


def _number(number: re.Match[str]) -> int | float:
    """An integer, or a float for a fraction or exponent; one too large for either is a fault."""
    if number[1] is None and number[2] is None:
        try:
            return int(number[0])
        except ValueError:  # Python refuses to read integers of over 4,300 digits
            raise _SyntaxFault(f"an integer of {len(number[0].lstrip('-')):,} digits, too long to read") from None
    value = float(number[0])
    if math.isinf(value):
        raise _SyntaxFault("number too large")
    return value


def parse_value(text: str) -> Any:
    """One value in Gemma 4's syntax (the whole text); `ValueError` when it is not one."""
    reader = _Reader(text)
    try:
        value = reader.value()
        reader.skip()
    except (_SyntaxFault, RecursionError) as fault:
        raise ValueError(str(fault)) from None
    if reader.position != len(text):
        raise ValueError(f"unexpected text after the value at character {reader.position}")
    return value


def scan_calls(text: str) -> CallScan:
    """Every `<|tool_call>…<tool_call|>` in `text`, and the text without them. Never raises."""
    calls: list[ToolCall] = []
    kept: list[str] = []
    position = 0
    while (start := text.find(CALL_OPEN, position)) >= 0:
        kept.append(text[position:start])
        call, position = _read_call(text, start + len(CALL_OPEN))
        calls.append(call)
    kept.append(text[position:])
    return CallScan(calls=tuple(calls), text="".join(kept))


def _read_call(text: str, position: int) -> tuple[ToolCall, int]:
    """The call that starts at `position` (after `<|tool_call>`) and where the text after it starts."""
    close = text.find(CALL_CLOSE, position)
    complete = close >= 0
    reader = _Reader(text, position)
    reader.skip()
    if text.startswith(CALL_PREFIX, reader.position):
        reader.position += len(CALL_PREFIX)
    name_match = _NAME.match(text, reader.position)
    name = name_match[0] if name_match else ""
    if name_match:
        reader.position = name_match.end()
    try:
        if not name:
            raise _SyntaxFault("the call has no function name")
        arguments = reader.mapping(0)
        reader.expect(CALL_CLOSE)
        return ToolCall(name, arguments), reader.position
    except (_SyntaxFault, RecursionError) as fault:
        if not complete:
            return ToolCall(name, complete=False, error="the call was cut off before its end"), len(text)
        return ToolCall(name, error=f"unreadable arguments: {fault}"), close + len(CALL_CLOSE)


def write_value(value: Any, quote_keys: bool = False) -> str:
    """`value` in Gemma 4's syntax, as its chat template writes tool arguments and results."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return QUOTE + value + QUOTE
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        items = (
            _write_key(str(key), quote_keys) + ":" + write_value(item, quote_keys)
            for key, item in value.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(write_value(item, quote_keys) for item in value) + "]"
    return QUOTE + str(value) + QUOTE


def _write_key(key: str, quote_keys: bool) -> str:
    """Bare as the template writes argument keys, quoted when bare text could not be read back."""
    return key if not quote_keys and _KEY.fullmatch(key) else QUOTE + key + QUOTE


def write_call(name: str, arguments: dict[str, Any]) -> str:
    """A call as the model writes it (for scripted answers and for showing a call)."""
    return f"{CALL_OPEN}{CALL_PREFIX}{name}{write_value(arguments)}{CALL_CLOSE}"


def without_calls(raw: str, tools: bool) -> CallScan:
    """A raw model text with its calls taken out, when tools were offered (else untouched)."""
    return scan_calls(raw) if tools else CallScan(calls=(), text=raw)


__all__ = ["CallScan", "ToolCall", "parse_value", "scan_calls", "write_call", "without_calls", "write_value"]
