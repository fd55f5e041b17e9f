"""Cache reuse between chat turns on the local backend: the same tokens as a full prefill, and actually used."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gemma_demo.engine.base import last_update
from gemma_demo.engine.prefix_cache import PrefixCache
from gemma_demo.engine.settings import GenerationSettings

TOKENS = 12
PLAIN = GenerationSettings(max_new_tokens=TOKENS)
KEPT = PLAIN.with_changes(keep_cache=True)


def picture(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (64, 80, 3), dtype=np.uint8))


def speech(seconds: float) -> np.ndarray:
    return (np.random.default_rng(7).standard_normal(int(seconds * 16_000)) * 0.1).astype(np.float32)


def turn(*parts) -> dict:
    return {"role": "user", "content": [*parts]}


def text(words: str) -> dict:
    return {"type": "text", "text": words}


@pytest.fixture
def backend(tiny_backend):
    """The tiny model with an empty store of its own for each test."""
    tiny_backend.prefix_cache = PrefixCache(tiny_backend.model, tiny_backend.processor)
    return tiny_backend


def test_follow_ups_reuse_the_cache_and_give_the_same_tokens_as_a_full_prefill(backend):
    follow_ups = [
        turn(text("Tell me more.")),  # text only
        turn({"type": "image", "image": picture(2)}, text("And this one?")),  # a new picture
        turn({"type": "audio", "audio": speech(1.5)}, text("What do you hear?")),  # audio
    ]
    conversation = [turn({"type": "image", "image": picture(1)}, text("What is it?"))]
    for number, follow_up in enumerate([None, *follow_ups]):
        if follow_up is not None:
            conversation.append(follow_up)
        full = last_update(backend.stream(conversation, PLAIN))
        kept = last_update(backend.stream(conversation, KEPT))
        assert kept.answer == full.answer and kept.stats.new_tokens == full.stats.new_tokens == TOKENS
        assert backend.prefix_cache.stats.reused == number
        if follow_up is not None:  # only the answer and the new turn were prefilled
            assert backend.prefix_cache.stats.last_prefill_tokens < kept.stats.prompt_tokens / 2
        conversation.append({"role": "assistant", "content": [text(kept.answer)]})
    assert backend.prefix_cache.stats.full == 1 and len(backend.prefix_cache) == 1


def test_a_different_start_falls_back_to_a_full_prefill(backend):
    last_update(backend.stream([turn(text("First conversation"))], KEPT))
    other = [turn(text("Another conversation altogether"))]
    assert last_update(backend.stream(other, KEPT)).answer == last_update(backend.stream(other, PLAIN)).answer
    assert backend.prefix_cache.stats.full == 2 and backend.prefix_cache.stats.reused == 0
    assert len(backend.prefix_cache) == 2


def test_kept_caches_are_bounded_oldest_dropped_first(tiny_backend):
    store = PrefixCache(tiny_backend.model, tiny_backend.processor, max_kept=2)
    tiny_backend.prefix_cache = store
    for name in ("one", "two", "three"):
        last_update(tiny_backend.stream([turn(text(f"Conversation {name}"))], KEPT))
    assert len(store) == 2
    last_update(tiny_backend.stream([turn(text("Conversation one")), {"role": "assistant", "content": "x"},
                                     turn(text("again"))], KEPT))
    assert store.stats.reused == 0  # "one" was the oldest, so it went first
    budget = PrefixCache(tiny_backend.model, tiny_backend.processor, max_bytes=store.kept_bytes // 2)
    tiny_backend.prefix_cache = budget
    for name in ("one", "two"):
        last_update(tiny_backend.stream([turn(text(f"Conversation {name}"))], KEPT))
    assert len(budget) == 1 and 0 < budget.kept_bytes <= budget.max_bytes
