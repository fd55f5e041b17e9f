"""Checking a JSON Schema a person typed, apart from the grammar engine that enforces it.

The page checks a schema before anything runs; importing the grammar engine for that
would pull torch into the page's start. A visitor's schema becomes a grammar that masks
tokens on the generation thread every visitor shares, so its size, its depth and the cost of
its patterns are limited here. llguidance unrolls counted repeats: `^(a{1000}){1000}$`
(a million characters) took a second for its first mask, then its lexer gave up and the
answer was a bare `"`. Measured with llguidance 1.9 on the tiny model's vocabulary, a
pattern that spells out 5,000 characters takes under 0.15 s for its first mask (on the
caller's thread, `engine.grammar`) and a few milliseconds for each later one; a minLength
beside a pattern is unrolled with it, and from about 2,000 the lexer gives up mid-answer.
Nesting is limited because `json`, `jsonschema` and llguidance all recurse.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema

from gemma_demo.errors import InvalidInputError

MAX_SCHEMA_CHARS = 64_000
MAX_SCHEMA_DEPTH = 32
MAX_PATTERN_CHARS = 1_000
MAX_PATTERN_SPAN = 5_000
MAX_PATTERN_MIN_LENGTH = 1_000

_COUNT = re.compile(r"\{(\d+)(?:,(\d*))?\}")


def read_schema(text: str) -> dict[str, Any]:
    """A schema from the text a person typed, checked as `check_schema` does."""
    if len(text or "") > MAX_SCHEMA_CHARS:
        raise InvalidInputError(_too_long(len(text)))
    try:
        schema = json.loads(text or "")
    except json.JSONDecodeError as error:
        raise InvalidInputError(f"The JSON answer schema is not JSON ({error.msg}, line {error.lineno}).") from None
    except RecursionError:
        raise InvalidInputError(_too_deep()) from None
    return check_schema(schema)


def check_schema(schema: Any) -> dict[str, Any]:
    """The schema if it is a JSON Schema object within the limits; otherwise a message that says what is wrong."""
    if not isinstance(schema, dict):
        raise InvalidInputError("The JSON answer schema must be a JSON object, e.g. {\"type\": \"object\", …}.")
    objects = _objects_within_depth(schema)
    size = len(json.dumps(schema, ensure_ascii=False, separators=(",", ":")))
    if size > MAX_SCHEMA_CHARS:
        raise InvalidInputError(_too_long(size))
    _check_patterns(objects)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as error:
        raise InvalidInputError(f"The JSON answer schema is not valid: {error.message}") from None
    return schema


def pattern_span(pattern: str) -> int:
    """About how many characters `pattern` spells out once its counted repeats are multiplied out.

    This is what llguidance's lexer unrolls: `(a{1000}){1000}` is a million. A loop (`*`, `+`,
    `{n,}`) counts once, or n times; anything not understood counts as one character, so
    the figure errs high, never low, for the patterns that cost.
    """
    groups = [[0, 0]]  # for each open group: its span so far and the span of its last item
    position = 0
    while position < len(pattern):
        char = pattern[position]
        if count := _COUNT.match(pattern, position):
            times = int(count[2] or count[1])
            groups[-1][0] += groups[-1][1] * (times - 1)
            groups[-1][1] *= times
            position = count.end()
            continue
        if char == "(":
            groups.append([0, 0])
            position += 1
            continue
        item, position = 1, position + 1
        if char == "\\":
            position += 1
        elif char == "[":
            position = _class_end(pattern, position)
        elif char == ")" and len(groups) > 1:
            item = groups.pop()[0]
        groups[-1][0] += item
        groups[-1][1] = item
    return sum(span for span, _ in groups)


def _class_end(pattern: str, position: int) -> int:
    """Where a character class ends, from just after its `[` (a leading `^` or `]` is part of it)."""
    position += pattern.startswith("^", position)
    position += pattern.startswith("]", position)
    while position < len(pattern) and pattern[position] != "]":
        position += 2 if pattern[position] == "\\" else 1
    return position + 1


def _objects_within_depth(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object in the schema, walked without recursion so that depth is refused, never recursed into."""
    objects, stack = [], [(schema, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_SCHEMA_DEPTH:
            raise InvalidInputError(_too_deep())
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
        if isinstance(node, dict):
            objects.append(node)
    return objects


def _check_patterns(objects: list[dict[str, Any]]) -> None:
    """Refuse patterns whose grammar would be too long, or too slow to mask on the shared thread."""
    patterns = [node["pattern"] for node in objects if isinstance(node.get("pattern"), str)]
    patterns += [key for node in objects if isinstance(node.get("patternProperties"), dict)
                 for key in node["patternProperties"]]
    for pattern in patterns:
        if len(pattern) > MAX_PATTERN_CHARS:
            raise InvalidInputError(
                f"A pattern in the JSON answer schema has {len(pattern):,} characters; the limit is "
                f"{MAX_PATTERN_CHARS:,}. Shorten it.")
    spans = [pattern_span(pattern) for pattern in patterns]
    if (total := sum(spans)) > MAX_PATTERN_SPAN:
        widest = patterns[spans.index(max(spans))]
        raise InvalidInputError(
            f"The patterns in the JSON answer schema spell out {total:,} characters once counted repeats "
            f"such as {{1000}} are multiplied out; the limit is {MAX_PATTERN_SPAN:,}. The largest is "
            f"{_shown(widest)}. Use smaller counts, or `*` and `+`, which cost no more than one character.")
    for node in objects:
        least = node.get("minLength")
        if ("pattern" in node or "format" in node) and isinstance(least, int) and least > MAX_PATTERN_MIN_LENGTH:
            raise InvalidInputError(
                f"The JSON answer schema asks for a minLength of {least:,} beside a pattern or format; the "
                f"limit there is {MAX_PATTERN_MIN_LENGTH:,}, because the decoder unrolls the pattern to that "
                "length. Lower it, or fold the length into the pattern.")


def _shown(pattern: str) -> str:
    return repr(pattern if len(pattern) <= 80 else pattern[:77] + "…")


def _too_long(size: int) -> str:
    return (f"The JSON answer schema has {size:,} characters; the limit is {MAX_SCHEMA_CHARS:,}. "
            "Shorten it (descriptions and examples count too).")


def _too_deep() -> str:
    return (f"The JSON answer schema is nested more than {MAX_SCHEMA_DEPTH} levels deep (objects and lists "
            "count). Flatten it, or reuse parts with $ref.")


__all__ = ["MAX_PATTERN_CHARS", "MAX_PATTERN_MIN_LENGTH", "MAX_PATTERN_SPAN", "MAX_SCHEMA_CHARS",
           "MAX_SCHEMA_DEPTH", "check_schema", "pattern_span", "read_schema"]
