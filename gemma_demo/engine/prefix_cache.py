"""Reusing a conversation's key/value cache between its turns (local backend).

A chat's next prompt is its last prompt plus the answer and the new question, so
prefilling it from scratch pays again for every earlier picture and word. After each
prefill, a copy of the cache is kept (the answer's own tokens are not in it: the answer's
reasoning is stripped from the history, so the cache after generation would not match).
A new prompt that starts with a kept prompt takes that cache and prefills only the rest,
with only the media that lie in the rest. The cache holds all but the prompt's last token,
which `generate` feeds itself, so the answer is computed exactly as without reuse.

Token ids alone do not say what a cache holds: a picture, an audio piece or a video frame
is a run of one placeholder id whose length depends only on its size, so two different
photos of one size give the same ids. A kept cache is found again only when everything
that shaped it is equal (`CacheKey`): the conversation it belongs to (the visitor's
session, so nobody can learn from a first token's speed what someone else sent), the
model's dtype, the system prompt, thinking and the image and frame budgets, the tokens,
and a digest of every media item's processor tensors, in order.

Chat turns go through the scheduler like any other request (`LocalBackend`) and share
batches with each other: each row is prefilled alone, from its own kept cache, and the
rows' caches are merged (left-padded, `batching.caches`) to decode together.
The kept caches are bounded by count, per conversation and in all, and by bytes on the
model's device, the oldest dropped first; a cache is measured before it is copied, and
one that cannot be kept is never copied.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import BatchFeature, DynamicCache

from gemma_demo.engine.batching.caches import merge_caches
from gemma_demo.engine.batching.generate import run_generate
from gemma_demo.engine.batching.requests import READING, Batch
from gemma_demo.engine.batching.watch import Abandoned, working_for
from gemma_demo.engine.memory import available_bytes
from gemma_demo.engine.settings import GenerationSettings

MAX_KEPT = 8
MAX_KEPT_PER_CONVERSATION = 2
MAX_KEPT_BYTES = 4 * 2**30
# Of the memory free on the model's device when it loaded, the share kept caches may take.
DEVICE_SHARE = 0.25
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


@dataclass(frozen=True)
class CacheKey:
    """Everything besides the token ids that shapes a prompt's cache."""

    conversation: str
    shape: tuple  # the model's dtype, system prompt, thinking, image and frame budgets
    media: dict[str, tuple[bytes, ...]] = field(default_factory=dict)  # per kind, a digest per item in order

    def covers(self, kept: CacheKey) -> bool:
        """Could a cache kept under `kept` start this prompt (its media the first of ours)?"""
        return (
            kept.conversation == self.conversation
            and kept.shape == self.shape
            and all(self.media.get(kind, ())[: len(digests)] == digests for kind, digests in kept.media.items())
        )


@dataclass
class KeptCache:
    ids: torch.Tensor  # the prompt tokens the cache holds, 1-D
    key: CacheKey  # its media: only the items within `ids`
    cache: DynamicCache
    nbytes: int


@dataclass
class ReuseStats:
    """What the store has done, for tests and the benchmark."""

    reused: int = 0
    full: int = 0
    last_prefill_tokens: int = 0
    not_kept: int = 0  # caches too large for the budget, never copied


def cache_key(inputs: BatchFeature, settings: GenerationSettings, dtype: torch.dtype) -> CacheKey | None:
    """The key a chat prompt's cache is kept and found under; None when none is to be kept."""
    if not (settings.keep_cache and settings.conversation):
        return None
    shape = (str(dtype), settings.system_prompt, settings.thinking, settings.image_budget, settings.video_frame_budget)
    return CacheKey(settings.conversation, shape, media_digests(inputs))


def media_digests(inputs: BatchFeature) -> dict[str, tuple[bytes, ...]]:
    """A digest of each picture, audio piece and video frame: its rows of every processor tensor."""
    hashes: dict[str, list] = {}
    for name, value in sorted(inputs.items()):
        kind = MEDIA_ITEMS.get(name)
        if kind is None or not isinstance(value, torch.Tensor):
            continue
        items = hashes.setdefault(kind, [hashlib.blake2b(digest_size=16) for _ in range(value.shape[0])])
        for item, row in zip(items, value):
            item.update(f"{name}:{row.dtype}:{tuple(row.shape)}".encode())
            item.update(row.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return {kind: tuple(item.digest() for item in items) for kind, items in hashes.items()}


def device_budget(device: torch.device, ceiling: int = MAX_KEPT_BYTES) -> int:
    """Bytes kept caches may hold on `device`: a share of what is free there now, at most `ceiling`."""
    free = available_bytes(device)
    return ceiling if free is None else min(ceiling, int(free * DEVICE_SHARE))


class PrefixCache:
    """The kept caches of one loaded model, and how a request with one is run."""

    def __init__(self, model: Any, processor: Any, max_kept: int = MAX_KEPT, max_bytes: int | None = None):
        self.model = model
        self.max_kept = max_kept
        self.max_bytes = device_budget(model.device) if max_bytes is None else max_bytes
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

    def key_for(self, inputs: BatchFeature, settings: GenerationSettings) -> CacheKey | None:
        return cache_key(inputs, settings, self.model.dtype)

    def run(self, batch: Batch, pad_token_id: int, join: Callable[[Batch], bool] = lambda b: False) -> None:
        """Prefill each chat turn from its conversation's kept cache (keeping the new one), then decode them together.

        Called by the scheduler's batch thread, so turns wait their turn like any request and
        never prefill beside another batch's prefill. Turns that arrive while the rows are
        prefilled `join` before the decoding starts. The batch does not restart for later
        arrivals: its rows' caches would have to be taken apart again. Stop ends it between
        two layers.
        """
        batch.restartable = False
        with working_for(batch):
            try:
                caches = self._prefill_rows(batch, join)
            except Abandoned:
                return
        if not caches:
            return
        for request in batch.requests:
            ids = request.inputs["input_ids"]
            request.inputs = BatchFeature({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
        cache = caches[0] if len(caches) == 1 else merge_caches(caches, self.model.config)
        caches.clear()  # the rows' own caches are freed once merged, not kept beside the batch's
        run_generate(self.model, batch, pad_token_id, cache=cache)

    def _prefill_rows(self, batch: Batch, join: Callable[[Batch], bool]) -> list[DynamicCache]:
        """Each wanted row's cache, in row order; rows stopped meanwhile leave the batch."""
        caches: dict[int, DynamicCache] = {}
        batch.prefill_started_at = time.perf_counter()
        while True:
            for request in [r for r in batch.requests if id(r) not in caches and r.wanted()]:
                request.stage = READING
                caches[id(request)] = self.prefill(request.inputs, request.cache_key)
            if not join(batch):
                break
        for request in [r for r in batch.requests if not r.wanted() or id(r) not in caches]:
            request.finish()
            batch.requests.remove(request)
        return [caches[id(request)] for request in batch.requests]

    def prefill(self, inputs: BatchFeature, key: CacheKey) -> DynamicCache:
        """A cache holding all of the prompt but its last token, from a kept one where possible."""
        ids = inputs["input_ids"][0]
        entry = self._take_longest_prefix(key, ids)
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
        self._keep(ids[:end].clone(), key, cache)
        return cache

    def _longest_prefix(self, key: CacheKey, ids: torch.Tensor) -> int | None:
        """The store key of the longest kept prompt that starts `ids` under `key` (hold the lock)."""
        best_key, best_length = None, -1
        for store_key, entry in self._kept.items():
            n = len(entry.ids)
            if best_length < n < len(ids) and key.covers(entry.key) and torch.equal(ids[:n], entry.ids):
                best_key, best_length = store_key, n
        return best_key

    def _take_longest_prefix(self, key: CacheKey, ids: torch.Tensor) -> KeptCache | None:
        """Remove and return the kept cache this prompt extends; it is extended in place."""
        with self._lock:
            store_key = self._longest_prefix(key, ids)
            return None if store_key is None else self._kept.pop(store_key)

    def _keep(self, ids: torch.Tensor, key: CacheKey, cache: DynamicCache) -> None:
        """Keep a snapshot if it fits the budget; a kept prompt that this one extends is superseded."""
        nbytes = cache_bytes(cache)
        if nbytes > self.max_bytes:
            with self._lock:
                self.stats.not_kept += 1
            return
        counts = {kind: _runs(ids, token) for kind, token in self._placeholder_ids().items()}
        media = {kind: digests[: counts.get(kind, 0)] for kind, digests in key.media.items()}
        kept_key = CacheKey(key.conversation, key.shape, {kind: d for kind, d in media.items() if d})
        with self._lock:
            superseded = [k for k, e in self._kept.items()
                          if len(e.ids) <= len(ids) and kept_key.covers(e.key) and torch.equal(ids[: len(e.ids)], e.ids)]
            for store_key in superseded:
                del self._kept[store_key]
            self._make_room(key.conversation, nbytes)
        snapshot = copy.deepcopy(cache)  # measured and made room for first: never copied just to be dropped
        with self._lock:
            self._kept[self._next_key] = KeptCache(ids, kept_key, snapshot, nbytes)
            self._next_key += 1
            self._make_room(key.conversation, 0)

    def _make_room(self, conversation: str, nbytes: int) -> None:
        """Drop the oldest caches until one more of `nbytes` (none for 0) fits every bound (hold the lock).

        A conversation over its own bound makes room from its own caches first.
        """
        adding = int(nbytes > 0)
        while self._kept:
            mine = [key for key, entry in self._kept.items() if entry.key.conversation == conversation]
            if len(mine) + adding > MAX_KEPT_PER_CONVERSATION:
                del self._kept[mine[0]]
            elif len(self._kept) + adding > self.max_kept or self.kept_bytes + nbytes > self.max_bytes:
                self._kept.popitem(last=False)
            else:
                return

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
