"""A chat backend for the page: queued real-shaped Gemma 4 answers, streamed slowly enough to watch.

`agent_helpers.QueuedBackend` in many small pieces, so a Stop can land mid-answer; once the
queue is empty every request gets `FALLBACK`.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent_helpers import QueuedBackend

FALLBACK = "A scripted answer."


@dataclass
class SlowQueuedBackend(QueuedBackend):
    pieces: int = 20
    delay_s: float = 0.03
    fallback: str | None = FALLBACK
