"""The contract every backend keeps: messages and settings in, a stream of updates out.

Tasks only ever talk to a `Backend`, so the local transformers engine and a remote
OpenAI-compatible server are interchangeable without touching a task.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from gemma_demo.errors import CapabilityError
from gemma_demo.engine.registry import ModelCapabilities
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.engine.tool_syntax import ToolCall

Message = dict[str, Any]


@dataclass(frozen=True)
class Stats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    time_to_first_token: float | None = None
    elapsed: float = 0.0
    model_memory_bytes: int | None = None
    weights: str = ""  # quantized text-decoder weights (`--quantize`: int8, int4); empty as loaded
    # Speculative decoding: the drafter's name, or why none drafted; its proposals and how many the model kept.
    drafter: str = ""
    draft_proposed: int = 0
    draft_accepted: int = 0
    # Tokens after each answer's first, and the time they took: decoding alone, so that the
    # speed of a transcript made of several pieces leaves out each piece's encoding and prefill.
    decode_tokens: int = 0
    decode_time: float = 0.0

    @classmethod
    def timed(cls, prompt_tokens: int, new_tokens: int, started: float, first: float | None, now: float,
              **rest: Any) -> Stats:
        """One answer's figures from its clock readings (`time.perf_counter`): start, first token, now."""
        return cls(
            prompt_tokens=prompt_tokens,
            new_tokens=new_tokens,
            time_to_first_token=None if first is None else first - started,
            elapsed=now - started,
            decode_tokens=max(new_tokens - 1, 0),
            decode_time=0.0 if first is None else now - first,
            **rest,
        )

    def followed_by(self, later: Stats) -> Stats:
        """These figures and a `later` generation's as one, for a turn made of several model calls.

        Tokens, times and drafts add up; the first token is the first call's (timed from its
        start); the speed comes from the summed decoding alone, so the encodings and prefills
        between calls do not count as decoding. The model's memory is the latest reading.
        """
        first = self.time_to_first_token
        if first is None and later.time_to_first_token is not None:
            first = self.elapsed + later.time_to_first_token
        return Stats(
            prompt_tokens=self.prompt_tokens + later.prompt_tokens,
            new_tokens=self.new_tokens + later.new_tokens,
            time_to_first_token=first,
            elapsed=self.elapsed + later.elapsed,
            model_memory_bytes=later.model_memory_bytes or self.model_memory_bytes,
            weights=later.weights or self.weights,
            drafter=later.drafter or self.drafter,
            draft_proposed=self.draft_proposed + later.draft_proposed,
            draft_accepted=self.draft_accepted + later.draft_accepted,
            decode_tokens=self.decode_tokens + later.decode_tokens,
            decode_time=self.decode_time + later.decode_time,
        )

    @property
    def tokens_per_second(self) -> float | None:
        if self.decode_tokens < 1 or self.decode_time <= 0:
            return None
        return self.decode_tokens / self.decode_time

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "tokens_per_second": self.tokens_per_second}

    def summary(self) -> str:
        parts = [f"{self.prompt_tokens} prompt tokens", f"{self.new_tokens} new tokens"]
        if self.time_to_first_token is not None:
            parts.append(f"first token {self.time_to_first_token:.2f} s")
        if self.tokens_per_second is not None:
            parts.append(f"{self.tokens_per_second:.1f} tokens/s")
        if self.model_memory_bytes:
            parts.append(f"model {self.model_memory_bytes / 2**30:.2f} GiB"
                         + (f" ({self.weights} weights)" if self.weights else ""))
        if self.draft_proposed:
            rate = self.draft_accepted / self.draft_proposed
            parts.append(f"drafts by {self.drafter}: {self.draft_accepted}/{self.draft_proposed} accepted ({rate:.0%})")
        elif self.drafter:
            parts.append(self.drafter)
        return " · ".join(parts)


@dataclass(frozen=True)
class Update:
    """The state of one generation so far; the last one has `done=True`."""

    answer: str = ""
    reasoning: str = ""
    stats: Stats = field(default_factory=Stats)
    done: bool = False
    status: str = ""
    # The model's tool calls, read from its text (local) or from the server's `tool_calls`.
    tool_calls: tuple[ToolCall, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"answer": self.answer, "reasoning": self.reasoning, "stats": self.stats.to_json()}


@dataclass(frozen=True)
class PromptCount:
    """A prompt's size in tokens, and how many of them are picture tokens."""

    tokens: int
    image_tokens: int = 0


class Backend(Protocol):
    """One loaded model (local) or one server endpoint (remote)."""

    name: str
    capabilities: ModelCapabilities

    def stream(self, messages: list[Message], settings: GenerationSettings) -> Iterator[Update]:
        """Yield updates as tokens arrive. Closing the iterator must stop generation.

        `settings.tools` are declared to the model and its calls come back as
        `Update.tool_calls`; `settings.json_schema`, when set, must hold for the answer.
        """
        ...


def last_update(updates: Iterator[Update]) -> Update:
    """Drain a stream, for callers that only want the final result."""
    final = Update()
    for final in updates:
        pass
    return final


def with_system_prompt(messages: list[Message], settings: GenerationSettings) -> list[Message]:
    """Prepend the settings' system prompt unless the task already wrote one.

    As a plain string: Gemma 4's template writes each text part of a list followed by a
    space, so parts would give the model `Answer in French. <turn|>`.
    """
    prompt = settings.system_prompt.strip()
    if not prompt or (messages and messages[0]["role"] == "system"):
        return messages
    return [{"role": "system", "content": prompt}, *messages]


def uses_audio(messages: list[Message]) -> bool:
    return any(
        isinstance(m["content"], list) and any(p.get("type") == "audio" for p in m["content"])
        for m in messages
    )


def check_capabilities(messages: list[Message], capabilities: ModelCapabilities, name: str) -> None:
    if uses_audio(messages) and not capabilities.audio:
        raise CapabilityError(audio_unsupported_message(name))


def audio_unsupported_message(name: str) -> str:
    return (
        f"{name} has no audio input: only Gemma 4 E2B, E4B and 12B hear audio. "
        "Pick E2B, E4B or 12B in the settings to use this feature."
    )
