"""A backend that answers from a queue of real-shaped Gemma 4 texts, calls included.

Each enqueued answer is raw model text (`<|tool_call>call:…<tool_call|>` and all); it is
read the way the local backend reads the model, so the loop sees exactly what it would see.
"""

from __future__ import annotations

import threading
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

    def enqueue(self, *answers: str) -> QueuedBackend:
        self.answers.extend(answers)
        return self

    def stream(self, messages: list[Message], settings: GenerationSettings) -> Iterator[Update]:
        self.requests.append((list(messages), settings))
        raw = self.answers.popleft()
        try:
            for end in (len(raw) // 2, len(raw)):
                scan = without_calls(raw[:end], bool(settings.tools))
                split = split_reasoning(scan.text)
                yield Update(split.answer, split.reasoning, Stats(10, end), done=end == len(raw), tool_calls=scan.calls)
        finally:
            self.closed.set()
