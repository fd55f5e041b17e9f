"""A request's place in a batch and the batch's own state: tokens received, timings, stop."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any

import torch
from transformers import BatchFeature

from gemma_demo.engine.batching.tensors import SEQUENCE_PADDING, media_shapes
from gemma_demo.engine.drafting import DraftRecord

MAX_BATCH = 8
MAX_CARRY_OVERS = 2

END = object()
WAITING = "Waiting for the model"
READING = "Reading the prompt"


@dataclass(eq=False)
class Request:
    """One prompt's place in a batch; its reader takes token ids (then `END` or an error) from `tokens`."""

    inputs: BatchFeature
    generation: dict[str, Any]
    max_new_tokens: int
    end_ids: frozenset[int]
    stop: threading.Event = field(default_factory=threading.Event)
    tokens: SimpleQueue = field(default_factory=SimpleQueue)
    new_tokens: int = 0
    first_token_at: float | None = None
    finished: bool = False
    batch: Batch | None = None
    generated: list[int] = field(default_factory=list)
    carry_overs: int = 0
    # A grammar the answer must follow (`engine.grammar.JsonConstraint`): it masks this row's
    # logits before each step and is told each token the row receives.
    constraint: Any = None
    # Who drafts for this request and how it went (`engine.drafting`).
    draft: DraftRecord = field(default_factory=lambda: DraftRecord(None))
    # What the work for this request is doing before its first token, for the status line.
    stage: str = WAITING
    # Each media kind's encoder output ("image", "audio", "video"), computed once (`engine.towers`).
    encoded: dict[str, Any] = field(default_factory=dict)
    # What finds this conversation's kept key/value cache (`engine.prefix_cache.CacheKey`): such
    # a request is prefilled on its own, from the kept cache, and decodes in a batch of chat turns.
    cache_key: Any = None
    queued_at: float = field(default_factory=time.monotonic)
    batch_key: tuple = field(init=False)

    def __post_init__(self) -> None:
        # Requests with equal keys can share a `generate` call.
        # Chat turns are prefilled one by one and batched only to decode, so their media never meet.
        shapes = "kept cache" if self.cache_key is not None else media_shapes(self.inputs)
        self.batch_key = tuple(sorted(self.generation.items())), shapes

    def receive(self, token: int, now: float) -> None:
        if not self.wanted():
            self.finish()
            return
        self.new_tokens += 1
        if self.first_token_at is None:
            self.first_token_at = now
        self.generated.append(token)
        if self.constraint is not None:
            self.constraint.consume(token)
        self.tokens.put(token)
        if token in self.end_ids or self.new_tokens >= self.max_new_tokens:
            self.finish()

    def finish(self, error: BaseException | None = None) -> None:
        if not self.finished:
            self.finished = True
            self.tokens.put(END if error is None else error)

    def wanted(self) -> bool:
        return not (self.finished or self.stop.is_set())

    def carry_over(self) -> None:
        """Make the tokens generated so far part of the prompt, so a new batch goes on from there."""
        ids = torch.tensor([self.generated], dtype=self.inputs["input_ids"].dtype)
        inputs = dict(self.inputs)
        for name in SEQUENCE_PADDING.keys() & inputs.keys():
            extra = ids if name == "input_ids" else torch.full_like(ids, int(name == "attention_mask"))
            inputs[name] = torch.cat([inputs[name], extra], dim=1)
        self.inputs, self.generated = BatchFeature(inputs), []
        self.carry_overs += 1


@dataclass(eq=False)
class Batch:
    requests: list[Request]
    thread: threading.Thread | None = None
    started_at: float = field(default_factory=time.perf_counter)
    # When the text prefill began: after the media were encoded (`engine.towers`).
    prefill_started_at: float | None = None
    # Every request's media are encoded: the model reads them from `Request.encoded`.
    media_ready: bool = False
    first_token_at: float | None = None
    steps: int = 0
    ending_to_take_more: bool = False
    # Whether it may stop and start again with newcomers (not a batch of chat turns, whose
    # rows' caches were merged: `engine.prefix_cache`).
    restartable: bool = True

    def over(self) -> bool:
        return all(not request.wanted() for request in self.requests)

    def can_grow(self) -> bool:
        """Could the batch restart with one more row (room left, no row carried over too often)?"""
        rows = [r for r in self.requests if r.wanted()]
        return self.restartable and len(rows) < MAX_BATCH and all(r.carry_overs < MAX_CARRY_OVERS for r in rows)

    def worth_restarting(self) -> bool:
        """Would prefilling this batch again cost less than waiting for it to end?

        Both are estimated from this batch's own timings: its text prefill, scaled by how
        much longer the prompts have grown, against its mean step times the largest budget
        left. Encoding media is not counted: a restart never encodes a request's media again,
        and newcomers pay for theirs whichever way they run.
        """
        rows = [r for r in self.requests if r.wanted()]
        if not rows or self.first_token_at is None or self.prefill_started_at is None or self.steps < 2:
            return False
        if not self.can_grow():
            return False
        prompt = max(int(r.inputs["input_ids"].shape[1]) for r in rows)
        prefill_again = (self.first_token_at - self.prefill_started_at) * (prompt + self.steps) / prompt
        step = (time.perf_counter() - self.first_token_at) / (self.steps - 1)
        return prefill_again < step * max(r.max_new_tokens - r.new_tokens for r in rows)
