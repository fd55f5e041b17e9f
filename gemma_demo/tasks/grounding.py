"""Reading Gemma 4 grounding answers: boxes and points on a 0–1000 grid.

Gemma 4 answers detection prompts Gemini-style, with a JSON list of
`{"box_2d": [y0, x0, y1, x1], "label": ...}` (or `point_2d: [y, x]`). In practice the
JSON comes fenced or bare, wrapped in prose, in Python quotes, with trailing commas,
or cut off by the token limit, so the parser salvages every complete item it can
find and never raises: a bad answer is reported as "nothing found", not a crash.
"""

import ast
import json
import math
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from gemma_demo.engine.reasoning import CONTROL_TOKEN, strip_thought_block

GRID_SIZE = 1000
DEFAULT_LABEL = "object"
MAX_LABEL_CHARS = 100
MAX_NESTING = 8
BOX_KEYS = ("box_2d", "bbox", "box")
POINT_KEYS = ("point_2d", "point")
LABEL_KEYS = ("label", "name")
BOX_COORDINATES = 4
POINT_COORDINATES = 2

_OPENING = re.compile(r"[\[{]")
_TRAILING_COMMA = re.compile(r",\s*([\]}])")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_CLOSING = {"[": "]", "{": "}"}
_CLOSERS = frozenset(_CLOSING.values())
_QUOTES = frozenset("\"'")
_UNREADABLE = object()


@dataclass(frozen=True)
class Box:
    """A labelled box on the model's 0–1000 grid, with y0 <= y1 and x0 <= x1."""

    label: str
    y0: float
    x0: float
    y1: float
    x1: float


@dataclass(frozen=True)
class Point:
    """A labelled point on the model's 0–1000 grid."""

    label: str
    y: float
    x: float


@dataclass(frozen=True)
class ParsedGrounding:
    """Everything readable in one answer, with the answer kept for display and debugging."""

    boxes: tuple[Box, ...]
    points: tuple[Point, ...]
    raw_text: str

    @property
    def is_empty(self) -> bool:
        return not self.boxes and not self.points

    @property
    def message(self) -> str:
        if self.is_empty:
            return (
                "No detections could be read from the model's answer. Try naming the objects "
                "more plainly, or raise the token limit if the answer was cut off."
            )
        boxes = _count(len(self.boxes), "box", "boxes")
        points = _count(len(self.points), "point", "points")
        return f"Found {boxes} and {points}."


def _count(number: int, singular: str, plural: str) -> str:
    return f"{number} {singular if number == 1 else plural}"


@dataclass(frozen=True)
class _Span:
    end: int | None
    parent: str | None


def parse_grounding(text: str) -> ParsedGrounding:
    """Collect every box and point in `text`; duplicates (a repeated answer) count once."""
    found: dict[Box | Point, None] = {}
    for value, bare_box_allowed in _decoded_values(_answer_only(text)):
        for item in _items(value, bare_box_allowed, depth=0):
            found.setdefault(item)
    boxes = tuple(item for item in found if isinstance(item, Box))
    points = tuple(item for item in found if isinstance(item, Point))
    return ParsedGrounding(boxes=boxes, points=points, raw_text=text)


def _answer_only(text: str) -> str:
    """Drop thinking (it holds drafts, not the answer) and chat-template tokens."""
    return CONTROL_TOKEN.sub(" ", strip_thought_block(text))


def _decoded_values(text: str) -> Iterator[tuple[object, bool]]:
    """Yield each readable JSON or Python literal in `text`, left to right.

    When a bracketed span cannot be read (prose, a broken item, a list cut off by the
    token limit), the scan steps inside it, so the complete items it holds still count.
    A bare four-number list is only taken for a box when it is not the value of a key
    in an object that could not be read: there it is a fragment of a labelled item.
    """
    spans: dict[int, _Span] = {}
    position = 0
    while match := _OPENING.search(text, position):
        start = match.start()
        if start not in spans:
            _index_brackets(text, start, spans)
        span = spans[start]
        value = _decode(text[start : span.end]) if span.end is not None else _UNREADABLE
        if value is _UNREADABLE:
            position = start + 1
            continue
        yield value, span.parent != "{"
        position = span.end


def _index_brackets(text: str, start: int, spans: dict[int, _Span]) -> None:
    """Match brackets from `start`, skipping quoted strings; record every bracket seen.

    Recording inner brackets too keeps a scan of nested, unreadable text linear.
    """
    stack: list[int] = []
    quote: str | None = None
    escaped = False
    for index in range(start, len(text)):
        char = text[index]
        if quote is not None:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in _QUOTES:
            quote = char
        elif char in _CLOSING:
            stack.append(index)
        elif char in _CLOSERS:
            if _CLOSING[text[stack[-1]]] != char:
                break
            opening = stack.pop()
            spans.setdefault(opening, _Span(index + 1, text[stack[-1]] if stack else None))
            if not stack:
                return
    for depth, opening in enumerate(stack):
        spans.setdefault(opening, _Span(None, text[stack[depth - 1]] if depth else None))


def _decode(fragment: str) -> object:
    for reader in (json.loads, _loads_without_trailing_commas, _python_literal):
        try:
            return reader(fragment)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return _UNREADABLE


def _loads_without_trailing_commas(fragment: str) -> object:
    return json.loads(_TRAILING_COMMA.sub(r"\1", fragment))


def _python_literal(fragment: str) -> object:
    """Read single-quoted answers; quietly, since odd escapes in model text only warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.literal_eval(fragment)


def _items(value: object, bare_box_allowed: bool, depth: int) -> Iterator[Box | Point]:
    if depth > MAX_NESTING:
        return
    if isinstance(value, dict):
        if any(key in value for key in (*BOX_KEYS, *POINT_KEYS)):
            item = _item(value)
            if item is not None:
                yield item
            return
        for child in value.values():
            yield from _items(child, False, depth + 1)
    elif isinstance(value, (list, tuple)):
        corners = _coordinates(value, BOX_COORDINATES) if bare_box_allowed else None
        if corners is not None:
            yield _box(DEFAULT_LABEL, corners)
            return
        for child in value:
            yield from _items(child, True, depth + 1)


def _item(mapping: dict) -> Box | Point | None:
    """Read one labelled item; bad coordinates drop the item, not the answer."""
    label = _label(mapping)
    for key in BOX_KEYS:
        if key in mapping:
            corners = _coordinates(mapping[key], BOX_COORDINATES)
            return None if corners is None else _box(label, corners)
    for key in POINT_KEYS:
        if key in mapping:
            yx = _coordinates(mapping[key], POINT_COORDINATES)
            return None if yx is None else Point(label, _on_grid(yx[0]), _on_grid(yx[1]))
    return None


def _label(mapping: dict) -> str:
    for key in LABEL_KEYS:
        raw = mapping.get(key)
        if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
            label = " ".join(str(raw).split())[:MAX_LABEL_CHARS]
            if label:
                return label
    return DEFAULT_LABEL


def _coordinates(raw: object, count: int) -> tuple[float, ...] | None:
    if isinstance(raw, str):
        raw = _NUMBER.findall(raw)
    if not isinstance(raw, (list, tuple)) or len(raw) != count:
        return None
    numbers = tuple(_number(value) for value in raw)
    return None if None in numbers else numbers


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _box(label: str, corners: tuple[float, ...]) -> Box:
    y0, x0, y1, x1 = (_on_grid(value) for value in corners)
    return Box(label, min(y0, y1), min(x0, x1), max(y0, y1), max(x0, x1))


def _on_grid(value: float) -> float:
    return float(min(max(value, 0.0), GRID_SIZE))


def grid_to_pixels(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """Map a grid box to `(x0, y0, x1, y1)` pixels of the picture the model was shown.

    The grid is relative to the whole picture, so the mapping is a plain scale per axis
    whatever the aspect ratio or the resizing the processor did.
    """
    _check_size(width, height)
    return (
        _to_pixels(box.x0, width),
        _to_pixels(box.y0, height),
        _to_pixels(box.x1, width),
        _to_pixels(box.y1, height),
    )


def point_to_pixels(point: Point, width: int, height: int) -> tuple[int, int]:
    """Map a grid point to `(x, y)` pixels, in the same order as Pillow expects."""
    _check_size(width, height)
    return _to_pixels(point.x, width), _to_pixels(point.y, height)


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"picture size must be positive, got {width}×{height}")


def _to_pixels(value: float, extent: int) -> int:
    return min(max(round(value / GRID_SIZE * extent), 0), extent)
