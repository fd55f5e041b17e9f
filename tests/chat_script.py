"""A chat backend for the page: queued real-shaped Gemma 4 answers, streamed slowly enough to watch.

Like `agent_helpers.QueuedBackend` (raw text, thoughts and tool calls read as the local
backend reads them), but in many small pieces, so a Stop can land mid-answer; once the
queue is empty every request gets `FALLBACK`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from agent_helpers import QueuedBackend
from gemma_demo.engine.base import Message, Stats, Update
from gemma_demo.engine.reasoning import split_reasoning
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.engine.tool_syntax import without_calls

FALLBACK = "A scripted answer."


@dataclass
class SlowQueuedBackend(QueuedBackend):
    pieces: int = 20
    delay_s: float = 0.03  # pacing, so the page sees a stream; no test waits on it

    def stream(self, messages: list[Message], settings: GenerationSettings) -> Iterator[Update]:
        self.requests.append((list(messages), settings))
        self.closed.clear()
        raw = self.answers.popleft() if self.answers else FALLBACK
        pieces = min(self.pieces, len(raw))
        try:
            for count in range(1, pieces + 1):
                time.sleep(self.delay_s)
                end = len(raw) * count // pieces
                scan = without_calls(raw[:end], bool(settings.tools))
                split = split_reasoning(scan.text)
                yield Update(split.answer, split.reasoning, Stats(100, count), done=count == pieces,
                             tool_calls=scan.calls)
        finally:
            self.closed.set()
