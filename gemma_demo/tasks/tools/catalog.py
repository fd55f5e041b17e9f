"""The built-in tools by name, and the set a conversation offers the model."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gemma_demo.errors import InvalidInputError
from gemma_demo.tasks.tools import media, utilities
from gemma_demo.tasks.tools.base import Tool

BUILTIN_TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in map(
        Tool.from_function,
        (
            utilities.calculate,
            utilities.current_time,
            media.detect_objects,
            media.point_at,
            media.read_text,
            media.read_document,
            media.transcribe,
            media.describe_video,
        ),
    )
}


@dataclass(frozen=True)
class Toolbox:
    """The tools one conversation offers, by name; their schemas go to the chat template."""

    tools: tuple[Tool, ...] = ()

    def get(self, name: str) -> Tool | None:
        return next((tool for tool in self.tools if tool.name == name), None)

    @property
    def schemas(self) -> tuple[dict, ...]:
        return tuple(tool.schema for tool in self.tools)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(tool.name for tool in self.tools)


def toolbox(names: Iterable[str], extra: Iterable[Tool] = ()) -> Toolbox:
    """The named built-ins plus `extra` (MCP tools the operator configured); unknown names are refused."""
    wanted = [name.strip() for name in names if name.strip()]
    unknown = [name for name in wanted if name not in BUILTIN_TOOLS and name not in {t.name for t in extra}]
    if unknown:
        raise InvalidInputError(
            f"Unknown tool {', '.join(map(repr, unknown))}. Available: {', '.join(BUILTIN_TOOLS)}"
            + "".join(f", {t.name}" for t in extra) + "."
        )
    extras = {tool.name: tool for tool in extra}
    return Toolbox(tuple(BUILTIN_TOOLS.get(name) or extras[name] for name in dict.fromkeys(wanted)))
