"""A backend that answers from a queue of real-shaped Gemma 4 texts, calls included.

Each enqueued answer is raw model text (`<|tool_call>call:…<tool_call|>` and all); it is
read the way the local backend reads the model, so the loop sees exactly what it would see.
`pieces`, `delay_s` and `fallback` make the same backend stream slowly enough for a page
to watch and a Stop to land mid-answer (the browser's chat tests).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from gemma_demo.engine.base import Message, Stats, Update
from gemma_demo.engine.reasoning import split_reasoning
from gemma_demo.engine.registry import SMALL, ModelCapabilities
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.engine.tool_syntax import without_calls


@dataclass
class QueuedBackend:
    name: str = "queued"
    capabilities: ModelCapabilities = SMALL
    answers: deque = field(default_factory=deque)
    requests: list[tuple[list[Message], GenerationSettings]] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)
    pieces: int = 2  # updates per answer
    delay_s: float = 0.0  # pacing before each update, so a page sees a stream; no test waits on it
    fallback: str | None = None  # the answer once the queue is empty; None: an empty queue is an error

    def enqueue(self, *answers: str) -> QueuedBackend:
        self.answers.extend(answers)
        return self

    def stream(self, messages: list[Message], settings: GenerationSettings) -> Iterator[Update]:
        self.requests.append((list(messages), settings))
        self.closed.clear()
        raw = self.answers.popleft() if self.answers or self.fallback is None else self.fallback
        pieces = max(1, min(self.pieces, len(raw)))
        try:
            for count in range(1, pieces + 1):
                time.sleep(self.delay_s)
                end = len(raw) * count // pieces
                scan = without_calls(raw[:end], bool(settings.tools))
                split = split_reasoning(scan.text)
                yield Update(split.answer, split.reasoning, Stats(10, end), done=count == pieces, tool_calls=scan.calls)
        finally:
            self.closed.set()
