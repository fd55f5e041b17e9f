"""Reusing a conversation's key/value cache between its turns (local backend).

A chat's next prompt is its last prompt plus the answer and the new question, so
prefilling it from scratch pays again for every earlier picture and word. After each
prefill, a copy of the cache is kept (the answer's own tokens are not in it: the answer's
reasoning is stripped from the history, so the cache after generation would not match).
A new prompt that starts with a kept prompt takes that cache and prefills only the rest,
with only the media that lie in the rest. The cache holds all but the prompt's last token,
which `generate` feeds itself, so the answer is computed exactly as without reuse.

Requests with a kept cache run in their own thread, outside the batcher: a batch would
have to pad every row's cache to one length. The kept caches are bounded by count and
bytes, the oldest dropped first; a cache that alone exceeds the bound is not kept.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from transformers import BatchFeature, DynamicCache

from gemma_demo.engine.batching.generate import run_generate
from gemma_demo.engine.batching.requests import READING, Batch, Request
from gemma_demo.engine.batching.watch import Abandoned, working_for

MAX_KEPT = 8
MAX_KEPT_BYTES = 4 * 2**30
# Which media tensors belong to which placeholder token, and how they are counted: one
# item per run of that token (a picture, an audio piece, a video frame) along the first axis.
MEDIA_ITEMS = {
    "pixel_values": "image",
    "image_position_ids": "image",
    "input_features": "audio",
    "input_features_mask": "audio",
    "pixel_values_videos": "video",
    "video_position_ids": "video",
}
PER_TOKEN = ("input_ids", "attention_mask", "mm_token_type_ids")


@dataclass
class KeptCache:
    ids: torch.Tensor  # the prompt tokens the cache holds, 1-D
    cache: DynamicCache
    nbytes: int


@dataclass
class ReuseStats:
    """What the store has done, for tests and the benchmark."""

    reused: int = 0
    full: int = 0
    last_prefill_tokens: int = 0


class PrefixCache:
    """The kept caches of one loaded model, and the thread that runs a request with one."""

    def __init__(self, model: Any, processor: Any, max_kept: int = MAX_KEPT, max_bytes: int = MAX_KEPT_BYTES):
        self.model = model
        self.max_kept = max_kept
        self.max_bytes = max_bytes
        self.stats = ReuseStats()
        self._lock = threading.Lock()
        self._kept: OrderedDict[int, KeptCache] = OrderedDict()
        self._next_key = 0
        self._processor = processor

    def _placeholder_ids(self) -> dict[str, int]:
        """The token that stands for each kind of media in the prompt (read on use: fakes in tests lack them)."""
        tokenizer = self._processor.tokenizer
        return {kind: tokenizer.convert_tokens_to_ids(getattr(self._processor, f"{kind}_token")) for kind in ("image", "audio", "video")}

    @property
    def kept_bytes(self) -> int:
        return sum(entry.nbytes for entry in self._kept.values())

    def __len__(self) -> int:
        return len(self._kept)

    def start(self, request: Request, name: str, pad_token_id: int) -> None:
        """Run `request` in its own thread, streaming to it as the batcher would."""
        batch = Batch([request])
        thread = threading.Thread(target=self._run, args=(batch, pad_token_id), name=f"generate-{name}-kept", daemon=True)
        batch.thread, request.batch = thread, batch
        thread.start()

    def _run(self, batch: Batch, pad_token_id: int) -> None:
        request = batch.requests[0]
        try:
            with working_for(batch):
                request.stage = READING
                cache = self.prefill(request.inputs)
            ids = request.inputs["input_ids"]
            request.inputs = BatchFeature({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
            run_generate(self.model, batch, pad_token_id, cache=cache)
        except Abandoned:
            pass
        except BaseException as error:  # noqa: BLE001 - handed to the reader, as the batcher does
            request.finish(error)
        finally:
            request.finish()
            batch.requests = []

    def prefill(self, inputs: BatchFeature) -> DynamicCache:
        """A cache holding all of the prompt but its last token, from a kept one where possible."""
        ids = inputs["input_ids"][0]
        entry = self._take_longest_prefix(ids)
        start = 0 if entry is None else len(entry.ids)
        cache = DynamicCache(config=self.model.config) if entry is None else entry.cache
        end = len(ids) - 1
        if start < end:
            chunk = self._chunk(inputs, start, end)
            with torch.inference_mode():
                self.model(**chunk.to(self.model.device), cache=cache, use_cache=True, logits_to_keep=1)
        with self._lock:
            self.stats.last_prefill_tokens = end - start
            if entry is None:
                self.stats.full += 1
            else:
                self.stats.reused += 1
        self._keep(ids[:end].clone(), copy.deepcopy(cache))
        return cache

    def _take_longest_prefix(self, ids: torch.Tensor) -> KeptCache | None:
        """Remove and return the kept cache whose prompt starts `ids` (the longest); it is extended in place."""
        with self._lock:
            best_key, best = None, None
            for key, entry in self._kept.items():
                n = len(entry.ids)
                if n < len(ids) and (best is None or n > len(best.ids)) and torch.equal(ids[:n], entry.ids):
                    best_key, best = key, entry
            if best_key is not None:
                del self._kept[best_key]
            return best

    def _keep(self, ids: torch.Tensor, cache: DynamicCache) -> None:
        """Keep a snapshot; a kept prompt that this one extends is superseded and dropped."""
        nbytes = cache_bytes(cache)
        if nbytes > self.max_bytes:
            return
        with self._lock:
            for key in [k for k, e in self._kept.items() if len(e.ids) <= len(ids) and torch.equal(ids[: len(e.ids)], e.ids)]:
                del self._kept[key]
            self._kept[self._next_key] = KeptCache(ids, cache, nbytes)
            self._next_key += 1
            while len(self._kept) > self.max_kept or self.kept_bytes > self.max_bytes:
                self._kept.popitem(last=False)

    def _chunk(self, inputs: BatchFeature, start: int, end: int) -> BatchFeature:
        """The prompt's tokens [start, end) and only the media whose placeholders lie there."""
        ids = inputs["input_ids"]
        chunk: dict[str, Any] = {"input_ids": ids[:, start:end], "attention_mask": torch.ones_like(ids[:, :end])}
        if "mm_token_type_ids" in inputs:
            # The bidirectional mask reads them by position from the start of the sequence.
            chunk["mm_token_type_ids"] = inputs["mm_token_type_ids"][:, :end]
        placeholders = self._placeholder_ids()
        before = {kind: _runs(ids[0, :start], token) for kind, token in placeholders.items()}
        inside = {kind: _runs(ids[0, start:end], token) for kind, token in placeholders.items()}
        for name, value in inputs.items():
            if name in PER_TOKEN:
                continue
            if name == "num_frames_per_video":
                chunk[name] = _videos_after(value, before["video"])
                continue
            kind = MEDIA_ITEMS.get(name)
            if kind is None:
                raise ValueError(f"Cannot split the processor output {name!r} between turns")
            if inside[kind]:
                chunk[name] = value[before[kind] :]
        if not inside["video"]:
            chunk.pop("num_frames_per_video", None)
        return BatchFeature(chunk)


def _runs(ids: torch.Tensor, token: int) -> int:
    """How many separate runs of `token` there are: one per picture, audio piece or video frame."""
    hits = (ids == token).to(torch.int8)
    if hits.numel() == 0:
        return 0
    starts = hits[1:] > hits[:-1]
    return int(starts.sum()) + int(hits[0])


def _videos_after(frames_per_video: torch.Tensor, frames_before: int) -> torch.Tensor:
    cumulative = torch.cumsum(frames_per_video, 0)
    return frames_per_video[int((cumulative <= frames_before).sum()) :]


def cache_bytes(cache: DynamicCache) -> int:
    """Memory the cache's tensors hold."""
    total = 0
    for layer in cache.layers:
        for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()
    return total
