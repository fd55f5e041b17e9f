"""Separate Gemma 4's thinking channel from its answer, also in a half-streamed text.

Gemma 4 writes `<|channel>thought\n…<channel|>answer`. The 26B-A4B and 31B models write
an empty thought block even with thinking off, and every model may end with `<turn|>`;
none of these markers may reach the person reading the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CHANNEL_OPEN = "<|channel>"
CHANNEL_CLOSE = "<channel|>"
THOUGHT_HEADER = "thought\n"

# Gemma 4's control tokens (`<|turn>`, `<turn|>`, `<|channel>`, `<|tool_call>`, `<eos>`, …):
# markers a model can emit, or a visitor can type, that must never reach an answer or a prompt.
CONTROL_TOKEN = re.compile(r"<\|?\w*\|>|<\|\w*>")
_END_OF_TURN = re.compile(r"(<turn\|>|<eos>).*\Z", re.DOTALL)

@dataclass(frozen=True)
class SplitText:
    reasoning: str
    answer: str


def split_reasoning(raw: str) -> SplitText:
    """Split raw model text (special tokens kept) into reasoning and a clean answer."""
    text = _END_OF_TURN.sub("", raw)
    reasoning_parts: list[str] = []
    answer_parts: list[str] = []
    while text:
        start = text.find(CHANNEL_OPEN)
        if start < 0:
            answer_parts.append(text)
            break
        answer_parts.append(text[:start])
        rest = text[start + len(CHANNEL_OPEN):]
        end = rest.find(CHANNEL_CLOSE)
        body = rest if end < 0 else rest[:end]
        if not THOUGHT_HEADER.startswith(body):
            reasoning_parts.append(body.removeprefix(THOUGHT_HEADER.rstrip("\n")).lstrip("\n"))
        if end < 0:
            break
        text = rest[end + len(CHANNEL_CLOSE):]
    reasoning = "\n".join(part.strip() for part in reasoning_parts if part.strip())
    answer = CONTROL_TOKEN.sub("", "".join(answer_parts)).strip()
    return SplitText(reasoning=reasoning, answer=answer)


def strip_thought_block(text: str) -> str:
    """The answer alone, for parsers that only want the final text."""
    return split_reasoning(text).answer
