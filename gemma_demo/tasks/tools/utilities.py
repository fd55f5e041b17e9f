"""Safe utilities: arithmetic read by an AST walker (never `eval`) and the time in a zone."""

from __future__ import annotations

import ast
import datetime as dt
import math
import operator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gemma_demo.tasks.tools.base import ToolError

MAX_EXPRESSION_CHARS = 500
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 10**300  # beyond a float's range: refuse rather than grow without bound
_OPERATORS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def calculate(expression: str) -> dict:
    """Work out an arithmetic expression exactly, e.g. "(17 + 5) * 3 / 2" or "2 ** 10".

    Args:
        expression: Numbers with + - * / // % ** and parentheses; no names or functions.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"The expression is longer than {MAX_EXPRESSION_CHARS} characters.")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError) as error:
        raise ToolError(f"Not an arithmetic expression: {error}") from None
    return {"expression": expression, "result": _evaluate(tree.body)}


def _evaluate(node: ast.AST) -> int | float:
    """Numbers and the operators above only; anything else (a name, `.attr`, a call) is refused."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _bounded(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        try:
            return _bounded(_OPERATORS[type(node.op)](left, right))
        except ZeroDivisionError:
            raise ToolError("Division by zero.") from None
        except OverflowError:
            raise ToolError("The result is too large.") from None
    raise ToolError(f"Only numbers and + - * / // % ** are allowed, not {type(node).__name__}.")


def _check_power(base: int | float, exponent: int | float) -> None:
    """Refuse before computing: `10 ** 10 ** 9` would take the machine for minutes."""
    too_large = abs(exponent) > MAX_EXPONENT or (
        abs(base) > 1 and exponent > 0 and math.log10(abs(base)) * exponent > math.log10(MAX_MAGNITUDE)
    )
    if too_large:
        raise ToolError(f"The power is too large (exponents up to {MAX_EXPONENT}, results up to 1e300).")


def _bounded(value: int | float | complex) -> int | float:
    if isinstance(value, complex):
        raise ToolError("The result is not a real number.")
    if (isinstance(value, float) and not math.isfinite(value)) or abs(value) > MAX_MAGNITUDE:
        raise ToolError("The number is too large.")
    return value


def current_time(zone: str = "UTC") -> dict:
    """The current date and time in a time zone.

    Args:
        zone: An IANA time zone name such as "Europe/Paris" or "America/New_York".
    """
    try:
        now = dt.datetime.now(ZoneInfo(zone.strip()))
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"Unknown time zone {zone!r}; use an IANA name such as Europe/Paris.") from None
    return {"zone": zone.strip(), "time": now.isoformat(timespec="seconds"), "weekday": now.strftime("%A")}
