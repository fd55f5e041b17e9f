"""Requests that arrive together share one `generate`; each row still gets exactly its own answer."""

import gc
import threading
import weakref

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import LogitsProcessor, LogitsProcessorList

from app_helpers import generation_threads, wait_until
from gemma_demo.engine import local as local_backend
from gemma_demo.engine.batching import scheduler as batching
from gemma_demo.engine.batching.generate import run_generate
from gemma_demo.engine.batching.requests import END, Batch, Request
from gemma_demo.engine.batching.tensors import merge_inputs
from gemma_demo.engine.base import last_update
from gemma_demo.errors import GenerationError
from gemma_demo.engine.local import _generation_kwargs, build_inputs
from gemma_demo.engine.settings import GenerationSettings

GREEDY = GenerationSettings(max_new_tokens=10)


def text(prompt: str):
    return [{"role": "user", "content": [{"type": "text", "text": prompt}]}]


def picture(color: str, prompt: str = "Describe."):
    image = Image.new("RGB", (320, 200), color)
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": prompt}]}]


def sound(seconds: float):
    samples = np.sin(np.arange(round(16_000 * seconds)) / 5).astype(np.float32)
    return [{"role": "user", "content": [{"type": "audio", "audio": samples}, {"type": "text", "text": "Transcribe."}]}]


def clip(frames: int):
    """A clip of `frames` flat frames, one per second, in the shape `sample_video` returns."""
    from transformers.video_utils import VideoMetadata

    class Clip:
        def __init__(self):
            self.frames = [np.full((48, 64, 3), 60 * i, np.uint8) for i in range(frames)]

        def metadata(self):
            return VideoMetadata(total_num_frames=25 * frames, fps=25.0, width=64, height=48,
                                 duration=float(frames), frames_indices=[25 * i for i in range(frames)])

    return [{"role": "user", "content": [{"type": "video", "video": Clip()}, {"type": "text", "text": "What happens?"}]}]


def request(backend, messages, settings=GREEDY) -> Request:
    inputs = build_inputs(backend.processor, messages, settings)
    return Request(inputs, _generation_kwargs(settings), settings.max_new_tokens, backend._end_ids())


def received(req: Request) -> list[int]:
    ids = []
    while (item := req.tokens.get(timeout=5)) is not END:
        assert not isinstance(item, BaseException), item
        ids.append(item)
    return ids


def generated(backend, requests: list[Request]) -> list[list[int]]:
    run_generate(backend.model, Batch(requests), backend.processor.tokenizer.pad_token_id)
    return [received(r) for r in requests]


def alone(backend, messages, settings=GREEDY) -> list[int]:
    return generated(backend, [request(backend, messages, settings)])[0]


@pytest.mark.parametrize("prompts", [
    [text("Hi."), text("Tell me a long story about a cat and a dog."), text("Count to three, please.")],
    [picture("red"), picture("navy", "What colour is this picture, in one word?")],
    [sound(1.0), sound(2.3), sound(0.4)],
    [clip(2), clip(4)],
], ids=["text", "image", "audio of different lengths", "videos of different lengths"])
def test_a_batch_gives_each_row_what_it_gets_alone(tiny_backend, prompts):
    expected = [alone(tiny_backend, p) for p in prompts]
    together = generated(tiny_backend, [request(tiny_backend, p) for p in prompts])
    assert together == expected
    assert all(len(ids) > 0 for ids in together)


def test_each_row_stops_at_its_own_token_budget(tiny_backend):
    short, long = GenerationSettings(max_new_tokens=3), GenerationSettings(max_new_tokens=12)
    expected = [alone(tiny_backend, text("Hi."), short), alone(tiny_backend, text("Tell me a story."), long)]
    rows = generated(tiny_backend, [request(tiny_backend, text("Hi."), short),
                                    request(tiny_backend, text("Tell me a story."), long)])
    assert [len(ids) for ids in expected] == [3, 12], "the tiny model ended a row early: pick other prompts"
    assert rows == expected


def test_merged_prompts_are_left_padded_and_media_concatenated(tiny_backend):
    parts = [build_inputs(tiny_backend.processor, picture(c, p), GREEDY)
             for c, p in (("red", "Hi."), ("blue", "A much longer question about the picture."))]
    merged = merge_inputs(parts, pad_token_id=0)
    short, long = (p["input_ids"].shape[1] for p in parts)
    assert merged["input_ids"].shape == (2, long)
    assert merged["attention_mask"][0, : long - short].sum() == 0
    assert torch.equal(merged["input_ids"][0, long - short:], parts[0]["input_ids"][0])
    assert torch.equal(merged["pixel_values"], torch.cat([p["pixel_values"] for p in parts]))


def test_only_compatible_requests_share_a_batch(tiny_backend):
    key = lambda messages, settings=GREEDY: request(tiny_backend, messages, settings).batch_key
    assert key(picture("red")) == key(picture("blue", "Another question, longer than the first."))
    assert key(text("Hi.")) == key(text("Something else entirely."))
    assert key(picture("red")) != key(picture("red"), GenerationSettings(max_new_tokens=10, image_budget=70))
    assert key(text("Hi.")) != key(text("Hi."), GenerationSettings(max_new_tokens=10, sampling=True))
    assert key(sound(1.0)) == key(sound(2.0))
    assert key(text("Hi.")) != key(picture("red"))


@pytest.fixture
def recorded_batches(tiny_backend, monkeypatch):
    """The batch sizes `generate` is called with; the first call waits until `release` is set."""
    sizes: list[int] = []
    release = threading.Event()
    real = tiny_backend.model.generate

    def generate(**kwargs):
        sizes.append(int(kwargs["input_ids"].shape[0]))
        if len(sizes) == 1:
            release.wait(10)
        return real(**kwargs)

    monkeypatch.setattr(tiny_backend.model, "generate", generate)
    return sizes, release


def in_threads(backend, prompts, settings=GREEDY):
    results: list = [None] * len(prompts)

    def ask(i):
        results[i] = last_update(backend.stream(prompts[i], settings))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    return threads, results


def test_requests_arriving_while_the_model_is_busy_join_one_batch(tiny_backend, recorded_batches):
    sizes, release = recorded_batches
    threads, results = in_threads(tiny_backend, [text(f"Question {i}.") for i in range(4)])
    threads[0].start()
    assert wait_until(lambda: len(sizes) == 1)
    for thread in threads[1:]:
        thread.start()
    assert wait_until(lambda: len(tiny_backend.scheduler._waiting) == 3)
    release.set()
    for thread in threads:
        thread.join(30)
    assert sizes[0] == 1 and sizes[1:] in ([3], [4]), sizes  # 4: the first one was carried over with them
    assert all(r is not None and r.done and r.stats.new_tokens > 0 for r in results)


@pytest.mark.parametrize("prompts", [
    (text("Long."), text("Short.")),
    (picture("red"), picture("navy", "What colour is this?")),
    (sound(1.0), sound(2.3)),
], ids=["text", "image", "audio"])
def test_a_running_batch_takes_in_a_request_that_arrives_later(tiny_backend, endless, encoded_items, prompts):
    long, short = GenerationSettings(max_new_tokens=120), GenerationSettings(max_new_tokens=20)
    expected = [last_update(tiny_backend.stream(p, s)).answer for p, s in zip(prompts, (long, short))]
    endless.clear()
    for name in encoded_items:
        encoded_items[name] = 0
    first = tiny_backend.stream(prompts[0], long)
    next(first)
    second = last_update(tiny_backend.stream(prompts[1], short))
    rest = last_update(first)
    assert endless == [1, 2], "the second request did not join the running batch"
    # The first row's prompt is prefilled twice, its picture or clip encoded once.
    with_media = sum(prompt[0]["content"][0]["type"] != "text" for prompt in prompts)
    assert sum(encoded_items.values()) == with_media
    assert [rest.answer, second.answer] == expected
    assert rest.stats.new_tokens == 120 and second.stats.new_tokens == 20


@pytest.fixture
def blocked_after_first_token(tiny_backend, monkeypatch):
    """The first `generate` call stops after its first token (it is decoding) until `release` is set.

    `release` is also set when it gives up waiting, so a test can tell whether it was still blocked.
    """
    sizes: list[int] = []
    release = threading.Event()
    real = tiny_backend.model.generate

    class Block(LogitsProcessor):
        steps = 0

        def __call__(self, input_ids, scores):
            self.steps += 1
            if self.steps == 2:
                release.wait(10)
                release.set()
            return scores

    def generate(**kwargs):
        sizes.append(int(kwargs["input_ids"].shape[0]))
        if len(sizes) == 1:
            kwargs["logits_processor"] = LogitsProcessorList([Block()])
        return real(**kwargs)

    monkeypatch.setattr(tiny_backend.model, "generate", generate)
    return sizes, release


def test_a_request_that_cannot_join_does_not_wait_behind_a_long_answer(tiny_backend, blocked_after_first_token,
                                                                      monkeypatch):
    monkeypatch.setattr(batching, "QUEUE_PATIENCE_S", 0.2)
    sizes, release = blocked_after_first_token
    first = tiny_backend.stream(text("Long."), GenerationSettings(max_new_tokens=40))
    next(first)
    # Sampling settings differ, so it cannot share the running batch.
    second = last_update(tiny_backend.stream(text("Short."), GenerationSettings(max_new_tokens=5, sampling=True)))
    assert second.done and second.stats.new_tokens > 0
    assert sizes == [1, 1] and not release.is_set(), "the second request waited for the first"
    release.set()
    assert last_update(first).done


def test_no_second_batch_starts_while_one_is_prefilling(tiny_backend, recorded_batches):
    """Two prefills at once take the same cores and delay both (P15); the newcomer waits for the first token."""
    sizes, release = recorded_batches
    threads, results = in_threads(tiny_backend, [text("Long."), text("Short.")])
    threads[0].start()
    assert wait_until(lambda: len(sizes) == 1)
    incompatible = request(tiny_backend, text("Other."), GenerationSettings(max_new_tokens=5, sampling=True))
    scheduler = tiny_backend.scheduler
    with scheduler._lock:
        scheduler._waiting.append(incompatible)
    scheduler.hurry(incompatible)
    assert scheduler._running == 1 and incompatible in scheduler._waiting
    with scheduler._lock:
        scheduler._waiting.remove(incompatible)
    release.set()
    threads[0].join(30)
    assert results[0].done


def test_closing_one_row_leaves_the_others_running(tiny_backend):
    settings = GenerationSettings(max_new_tokens=40)
    # Suppressing the end of turn makes both rows run to their budget, so the batch outlives the closed row.
    settings_kwargs = {**_generation_kwargs(settings), "suppress_tokens": sorted(tiny_backend._end_ids())}
    rows = [Request(build_inputs(tiny_backend.processor, text(p), settings), settings_kwargs, 40,
                    tiny_backend._end_ids()) for p in ("One.", "Two.")]
    worker = threading.Thread(target=run_generate, args=(tiny_backend.model, Batch(rows), 0))
    worker.start()
    rows[0].tokens.get(timeout=10)
    rows[0].stop.set()
    worker.join(30)
    assert rows[0].new_tokens < 40
    assert rows[1].new_tokens == 40


def test_an_error_in_a_batch_reaches_every_reader(tiny_backend, monkeypatch):
    monkeypatch.setattr(batching, "GATHER_S", 1.0)

    def broken(**kwargs):
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(tiny_backend.model, "generate", broken)
    errors = []

    def ask(prompt):
        try:
            last_update(tiny_backend.stream(text(prompt), GREEDY))
        except GenerationError as error:
            errors.append(str(error))

    threads = [threading.Thread(target=ask, args=(f"Q{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(errors) == 3 and all("device-side assert" in e for e in errors)
    assert not generation_threads()



def test_a_finished_request_is_freed_at_once_not_at_the_next_full_collection(tiny_backend, monkeypatch):
    """Its prompt tensors (pictures, audio, video frames) must not wait for the cycle collector."""
    made: list[Request] = []

    def keep(*args, **kwargs):
        made.append(Request(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(local_backend, "Request", keep)
    gc.disable()
    try:
        last_update(tiny_backend.stream(picture("red"), GREEDY))
        freed = weakref.ref(made.pop())
        assert freed() is None
    finally:
        gc.enable()
