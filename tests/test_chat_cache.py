"""Cache reuse between chat turns on the local backend: the same tokens as a full prefill, found
only by what shaped it (a picture's content, not just its size), owned by one conversation, and
run through the scheduler like every other request."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import pytest
from PIL import Image
from transformers import DynamicCache, LogitsProcessor, LogitsProcessorList

from app_helpers import wait_until
from gemma_demo.engine import prefix_cache as prefix_cache_module
from gemma_demo.engine.base import last_update
from gemma_demo.engine.batching import scheduler as scheduler_module
from gemma_demo.engine.prefix_cache import MAX_KEPT_PER_CONVERSATION, PrefixCache
from gemma_demo.engine.registry import ModelCapabilities
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.tasks.conversation import file_part, model_messages, text_part
from pdf_factory import text_pdf

TOKENS = 12
PLAIN = GenerationSettings(max_new_tokens=TOKENS)
KEPT = PLAIN.with_changes(keep_cache=True, conversation="visitor-a")
OTHER_VISITOR = KEPT.with_changes(conversation="visitor-b")


def picture(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (64, 80, 3), dtype=np.uint8))


def speech(seconds: float, seed: int = 7) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * 16_000)) * 0.1).astype(np.float32)


def turn(*parts) -> dict:
    return {"role": "user", "content": [*parts]}


def text(words: str) -> dict:
    return {"type": "text", "text": words}


def image(seed: int) -> dict:
    return {"type": "image", "image": picture(seed)}


def audio(seed: int) -> dict:
    return {"type": "audio", "audio": speech(1.5, seed)}


@pytest.fixture
def backend(tiny_backend):
    """The tiny model with an empty store of its own for each test."""
    tiny_backend.prefix_cache = PrefixCache(tiny_backend.model, tiny_backend.processor)
    return tiny_backend


def answer(backend, messages, settings) -> str:
    update = last_update(backend.stream(messages, settings))
    assert update.stats.new_tokens == settings.max_new_tokens
    return update.answer


def test_follow_ups_reuse_the_cache_and_give_the_same_tokens_as_a_full_prefill(backend):
    follow_ups = [
        turn(text("Tell me more.")),  # text only
        turn(image(2), text("And this one?")),  # a new picture
        turn({"type": "audio", "audio": speech(1.5)}, text("What do you hear?")),  # audio
    ]
    conversation = [turn(image(1), text("What is it?"))]
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
    assert answer(backend, other, KEPT) == answer(backend, other, PLAIN)
    assert backend.prefix_cache.stats.full == 2 and backend.prefix_cache.stats.reused == 0
    assert len(backend.prefix_cache) == 2


@pytest.mark.parametrize("first, second", [(image(1), image(2)), (audio(1), audio(2))], ids=["picture", "clip"])
def test_media_of_the_same_size_but_other_content_never_reuse_a_cache(backend, first, second):
    """Same-size media give the same token ids; only their content tells the prompts apart."""
    asked = [turn(second, text("What is it?"))]
    cold = answer(backend, asked, PLAIN)
    last_update(backend.stream([turn(first, text("What is it?"))], KEPT))
    assert answer(backend, [*asked], KEPT) == cold
    with_follow_up = [*asked, {"role": "assistant", "content": "x"}, turn(text("More?"))]
    assert answer(backend, with_follow_up, KEPT) == answer(backend, with_follow_up, PLAIN)
    assert backend.prefix_cache.stats.reused == 1  # only the second picture's own follow-up


def test_pdf_pages_of_the_same_size_but_other_text_never_reuse_a_cache(backend, tmp_path):
    capabilities = ModelCapabilities(audio=True, context_tokens=131_072)
    documents = []
    for name, words in (("a.pdf", "Revenue rose by a third"), ("b.pdf", "Staff fell by one half")):
        (tmp_path / name).write_bytes(text_pdf([words]))
        history = [{"role": "user", "content": [file_part(tmp_path / name), text_part("Summarise it.")]}]
        documents.append(model_messages(history, capabilities, "tiny"))
    cold = answer(backend, documents[1], PLAIN)
    last_update(backend.stream(documents[0], KEPT))
    assert answer(backend, documents[1], KEPT) == cold
    assert backend.prefix_cache.stats.reused == 0


def test_a_cache_belongs_to_its_conversation(backend):
    """Another visitor's same picture and words are prefilled in full: a fast first token would tell."""
    asked = [turn(image(1), text("What is it?")), {"role": "assistant", "content": "x"}, turn(text("More?"))]
    last_update(backend.stream(asked[:1], KEPT))
    assert answer(backend, asked, OTHER_VISITOR) == answer(backend, asked, PLAIN)
    assert backend.prefix_cache.stats.reused == 0
    last_update(backend.stream(asked, KEPT))
    assert backend.prefix_cache.stats.reused == 1
    nobody = KEPT.with_changes(conversation="")
    last_update(backend.stream([turn(text("Unowned"))], nobody))
    assert backend.prefix_cache.stats.full == 2  # an unowned prompt keeps nothing and takes nothing


def test_kept_caches_are_bounded_oldest_dropped_first(tiny_backend):
    store = PrefixCache(tiny_backend.model, tiny_backend.processor, max_kept=2)
    tiny_backend.prefix_cache = store
    for name in ("one", "two", "three"):
        last_update(tiny_backend.stream([turn(text(f"Conversation {name}"))], KEPT.with_changes(conversation=name)))
    assert len(store) == 2
    one = KEPT.with_changes(conversation="one")
    last_update(tiny_backend.stream([turn(text("Conversation one")), {"role": "assistant", "content": "x"},
                                     turn(text("again"))], one))
    assert store.stats.reused == 0  # "one" was the oldest, so it went first
    budget = PrefixCache(tiny_backend.model, tiny_backend.processor, max_bytes=store.kept_bytes // 2)
    tiny_backend.prefix_cache = budget
    for name in ("one", "two"):
        last_update(tiny_backend.stream([turn(text(f"Conversation {name}"))], KEPT.with_changes(conversation=name)))
    assert len(budget) == 1 and 0 < budget.kept_bytes <= budget.max_bytes


def test_one_conversation_keeps_a_few_caches_and_leaves_the_others_theirs(backend):
    last_update(backend.stream([turn(text("Someone else's question"))], OTHER_VISITOR))
    for n in range(MAX_KEPT_PER_CONVERSATION + 2):
        last_update(backend.stream([turn(text(f"Branch {n} of my conversation"))], KEPT))
    owners = [entry.key.conversation for entry in backend.prefix_cache._kept.values()]
    assert owners.count("visitor-a") == MAX_KEPT_PER_CONVERSATION and owners.count("visitor-b") == 1


def test_a_cache_too_large_for_the_budget_is_never_copied(tiny_backend, monkeypatch):
    copies = []
    real = prefix_cache_module.copy.deepcopy
    monkeypatch.setattr(prefix_cache_module.copy, "deepcopy",
                        lambda value, *memo: (isinstance(value, DynamicCache) and copies.append(1)) or real(value, *memo))
    tiny_backend.prefix_cache = store = PrefixCache(tiny_backend.model, tiny_backend.processor, max_bytes=1)
    last_update(tiny_backend.stream([turn(text("Too big to keep"))], KEPT))
    assert store.stats.not_kept == 1 and len(store) == 0 and copies == []
    tiny_backend.prefix_cache = store = PrefixCache(tiny_backend.model, tiny_backend.processor)
    last_update(tiny_backend.stream([turn(text("Small enough"))], KEPT))
    assert len(store) == 1 and copies == [1]


@dataclass
class Hold:
    """The next `generate` call after `arm()` waits until `release` is set: before its prefill,
    or after its first token (while it decodes)."""

    sizes: list[int] = field(default_factory=list)  # the batch size of each call since arming
    release: threading.Event = field(default_factory=threading.Event)
    armed: bool = False
    decoding: bool = False

    def arm(self, decoding: bool = False) -> None:
        self.sizes.clear()
        self.armed, self.decoding = True, decoding


class WaitAtSecondStep(LogitsProcessor):
    def __init__(self, release: threading.Event):
        self.release, self.steps = release, 0

    def __call__(self, input_ids, scores):
        self.steps += 1
        if self.steps == 2:
            self.release.wait(30)
            self.release.set()  # so a test can tell whether it gave up waiting
        return scores


@pytest.fixture
def held_generate(tiny_backend, monkeypatch):
    hold = Hold()
    real = tiny_backend.model.generate

    def generate(**kwargs):
        hold.sizes.append(int(kwargs["input_ids"].shape[0]))
        if hold.armed and hold.decoding:
            kwargs["logits_processor"] = LogitsProcessorList([WaitAtSecondStep(hold.release)])
        elif hold.armed:
            hold.release.wait(30)
        hold.armed = False
        return real(**kwargs)

    monkeypatch.setattr(tiny_backend.model, "generate", generate)
    yield hold
    hold.release.set()


def in_thread(backend, messages, settings) -> tuple[threading.Thread, list]:
    result: list = []
    thread = threading.Thread(target=lambda: result.append(last_update(backend.stream(messages, settings))))
    thread.start()
    return thread, result


def test_a_follow_up_waits_for_a_running_prefill_then_reuses_its_cache(backend, held_generate, monkeypatch):
    """One prefill at a time: a chat turn is queued like any request, not run in a thread of its own."""
    monkeypatch.setattr(scheduler_module, "QUEUE_PATIENCE_S", 0.05)
    asked = [turn(image(1), text("What is it?")), {"role": "assistant", "content": "x"}, turn(text("More?"))]
    cold = answer(backend, asked, PLAIN)
    last_update(backend.stream(asked[:1], KEPT))
    held_generate.arm()
    busy, _ = in_thread(backend, [turn(text("Someone else's long question"))], PLAIN.with_changes(max_new_tokens=3))
    assert wait_until(lambda: len(held_generate.sizes) == 1)  # held inside its prefill
    hurried = []
    real_hurry = backend.scheduler.hurry
    monkeypatch.setattr(backend.scheduler, "hurry", lambda request: hurried.append(1) or real_hurry(request))
    follow_up, result = in_thread(backend, asked, KEPT)
    assert wait_until(lambda: len(hurried) >= 3), "the follow-up was never queued"
    assert backend.prefix_cache.stats.reused == 0 and not result, "a second prefill ran beside the first"
    held_generate.release.set()
    busy.join(30)
    follow_up.join(30)
    assert result[0].answer == cold and backend.prefix_cache.stats.reused == 1


LONG = " ".join(f"word{n}" for n in range(120))  # past the tiny model's 64-token sliding window


@pytest.mark.parametrize("conversations", [
    ([turn(image(1), text("What is it?"))], [turn(text("Hi."))]),
    ([turn(text(LONG))], [turn(audio(3), text("And this?"))]),
    ([turn(text("Short."))], [turn(text(LONG)), {"role": "assistant", "content": "x"}, turn(text("More?"))]),
], ids=["picture-and-text", "long-and-audio", "short-and-follow-up"])
def test_chat_turns_of_two_conversations_decode_in_one_batch_as_they_would_alone(backend, held_generate,
                                                                                 conversations):
    """Each row is prefilled from its own cache; the caches are merged, padded on the left, to decode together."""
    alone = [last_update(backend.stream(messages, PLAIN)) for messages in conversations]
    last_update(backend.stream(conversations[1][:1], OTHER_VISITOR))  # the second may extend a kept cache
    held_generate.arm()
    busy, _ = in_thread(backend, [turn(text("Busy."))], PLAIN.with_changes(sampling=True))
    assert wait_until(lambda: len(held_generate.sizes) == 1)
    threads = [in_thread(backend, messages, settings) for messages, settings in zip(conversations, (KEPT, OTHER_VISITOR))]
    assert wait_until(lambda: len(backend.scheduler._waiting) == 2)
    held_generate.release.set()
    for thread, _ in [(busy, None), *threads]:
        thread.join(30)
    assert held_generate.sizes == [1, 2]
    assert [result[0].answer for _, result in threads] == [update.answer for update in alone]
    assert [result[0].stats.new_tokens for _, result in threads] == [update.stats.new_tokens for update in alone]


def test_a_chat_turn_does_not_wait_behind_another_conversations_long_answer(backend, held_generate, monkeypatch):
    """A batch of chat turns never restarts for newcomers, so one that arrives later starts beside it."""
    monkeypatch.setattr(scheduler_module, "QUEUE_PATIENCE_S", 0.05)
    held_generate.arm(decoding=True)
    first = backend.stream([turn(text("A long answer, please."))], KEPT.with_changes(max_new_tokens=40))
    next(first)  # its first token came: it decodes, held at its second step
    second = last_update(backend.stream([turn(text("Quick one."))], OTHER_VISITOR))
    assert second.done and not held_generate.release.is_set(), "the second turn waited for the first"
    held_generate.release.set()
    assert last_update(first).stats.new_tokens > 1
