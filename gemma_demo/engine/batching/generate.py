"""The one `generate` call for a batch: each row streams to its request and stops on its own."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer

from gemma_demo.engine.batching.requests import READING, Batch
from gemma_demo.engine.batching.tensors import merge_inputs
from gemma_demo.engine.batching.watch import Abandoned, working_for
from gemma_demo.engine.drafting import generate_drafting
from gemma_demo.engine.towers import encode_media


class _RowStreamer(BaseStreamer):
    """Hands row i's new token to request i; `generate` calls `put` with the prompt first."""

    def __init__(self, batch: Batch):
        self.batch = batch
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        now = time.perf_counter()
        if self.batch.first_token_at is None:
            self.batch.first_token_at = now
        first = self.batch.steps == 0
        self.batch.steps += 1
        # One token per row, or several for a lone row when a drafter's guesses were accepted.
        for request, row in zip(self.batch.requests, value.reshape(len(self.batch.requests), -1).tolist()):
            request.draft.round(len(row), request.max_new_tokens - request.new_tokens, first)
            for token in row:
                request.receive(token, now)

    def end(self) -> None:
        if not self.batch.ending_to_take_more:
            for request in self.batch.requests:
                request.finish()


class _RowStops(StoppingCriteria):
    """Ends each row on its own (Stop pressed, its reader gone, its token budget spent), or
    every row at once when the batch should start again with requests that arrived since."""

    def __init__(self, batch: Batch, take_more: Callable[[Batch], bool]):
        self.batch = batch
        self.take_more = take_more

    def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
        if self.take_more(self.batch):
            self.batch.ending_to_take_more = True
            return torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        done = [not request.wanted() for request in self.batch.requests]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class _RowConstraints(LogitsProcessor):
    """Masks each constrained row's logits to the tokens its grammar allows next."""

    def __init__(self, batch: Batch):
        self.batch = batch

    def __call__(self, input_ids, scores: torch.Tensor) -> torch.Tensor:
        for row, request in enumerate(self.batch.requests):
            if request.constraint is not None and request.wanted():
                request.constraint.mask(scores[row])
        return scores


def _logits_processors(model, batch: Batch) -> dict:
    """Media placeholders suppressed for every row, and each row's grammar where it has one.

    An answer must never hold `<|image|>` (or the audio and video placeholders): a batch that
    restarts prefills each row's prompt plus what it has written so far, with the row's
    media, and one placeholder too many fails the whole batch ("Image features and image
    tokens do not match"). The tiny model sampled one now and then.
    """
    processors = [_NoPlaceholders(placeholder_ids(model.config))]
    if any(request.constraint is not None for request in batch.requests):
        processors.append(_RowConstraints(batch))
    return {"logits_processor": LogitsProcessorList(processors)}


class _NoPlaceholders(LogitsProcessor):
    """transformers' `SuppressTokensLogitsProcessor` by another type: `generate` drops the one
    it builds from `suppress_tokens` when a processor of the same type is passed in."""

    def __init__(self, ids: list[int]):
        self.ids = ids

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores[:, self.ids] = -float("inf")
        return scores


def placeholder_ids(config) -> list[int]:
    """The media placeholder tokens a Gemma 4 config names."""
    names = ("image_token_id", "audio_token_id", "video_token_id")
    return sorted({i for name in names if (i := getattr(config, name, None)) is not None})


def run_generate(
    model,
    batch: Batch,
    pad_token_id: int,
    take_more: Callable[[Batch], bool] = lambda b: False,
    join: Callable[[Batch], bool] = lambda b: False,
    **extra,
) -> None:
    """The one `generate` call for a batch, streaming each row to its request; `extra` goes to `generate` (a kept cache).

    Each request's media are encoded first, one request at a time; requests that arrived
    meanwhile and can share the batch `join` it before the text prefill begins, so people
    who pressed Run a few seconds apart share one prefill instead of one waiting for the
    other's whole answer. Stop ends the work between two layers (`watch`).
    """
    with working_for(batch):
        try:
            _encode_and_generate(model, batch, pad_token_id, take_more, join, extra)
        except Abandoned:
            pass


def _encode_and_generate(model, batch: Batch, pad_token_id: int, take_more, join, extra: dict) -> None:
    encode_media(model, batch.requests)
    while join(batch):
        encode_media(model, batch.requests)
    # A row stopped before its media were encoded has none to prefill with: it leaves now.
    for request in [r for r in batch.requests if not r.wanted()]:
        request.finish()
        batch.requests.remove(request)
    if not batch.requests:
        return
    batch.media_ready = True
    requests = batch.requests
    for request in requests:
        request.stage = READING
    batch.prefill_started_at = time.perf_counter()
    inputs = merge_inputs([r.inputs for r in requests], pad_token_id).to(model.device)

    def call(**drafting) -> None:
        with torch.inference_mode():
            model.generate(
                **inputs,
                max_new_tokens=max(r.max_new_tokens - r.new_tokens for r in requests),
                streamer=_RowStreamer(batch),
                stopping_criteria=StoppingCriteriaList([_RowStops(batch, take_more)]),
                pad_token_id=pad_token_id,
                **requests[0].generation,
                **_logits_processors(model, batch),
                **extra,
                **drafting,
            )

    generate_drafting(call, [r.draft for r in requests], lambda: batch.steps > 0)
