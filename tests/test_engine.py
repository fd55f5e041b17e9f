"""The streaming engine with the tiny model: every modality streams, Stop stops, errors surface."""

import functools
import queue
import time
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.video_utils import VideoMetadata

from app_helpers import generation_threads, wait_until
from gemma_demo.engine.base import last_update
from gemma_demo.errors import CapabilityError, GenerationError, InvalidInputError
from gemma_demo.engine.local import UPDATE_INTERVAL_S, build_inputs
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.settings import GenerationSettings

STOP_DEADLINE_S = 60.0  # a ceiling for a busy machine, not a speed target
TOKEN_CEILING_S = 30.0


@dataclass(frozen=True)
class FakeVideo:
    frames: tuple
    fps: float
    indices: tuple

    def metadata(self) -> VideoMetadata:
        n = len(self.frames)
        return VideoMetadata(total_num_frames=max(self.indices) + 1, fps=self.fps, width=64, height=48,
                             duration=(max(self.indices) + 1) / self.fps, frames_indices=list(self.indices)[:n])


def video() -> FakeVideo:
    frames = tuple(np.full((48, 64, 3), 40 * i, np.uint8) for i in range(3))
    return FakeVideo(frames=frames, fps=25.0, indices=(0, 1500, 3025))


def user(*parts):
    return [{"role": "user", "content": [*parts]}]


PROMPTS = {
    "text": lambda: user({"type": "text", "text": "Tell me a story."}),
    "image": lambda: user({"type": "image", "image": Image.new("RGB", (320, 200), "red")},
                          {"type": "text", "text": "Describe."}),
    "audio": lambda: user({"type": "audio", "audio": np.sin(np.arange(16_000) / 5).astype(np.float32)},
                          {"type": "text", "text": "Transcribe."}),
    "video": lambda: user({"type": "video", "video": video()}, {"type": "text", "text": "What happens?"}),
}


@pytest.mark.parametrize("kind", sorted(PROMPTS))
def test_every_modality_streams(tiny_backend, kind):
    updates = list(tiny_backend.stream(PROMPTS[kind](), GenerationSettings(max_new_tokens=12)))
    assert len(updates) >= 2
    final = updates[-1]
    assert final.done and not any(u.done for u in updates[:-1])
    assert final.stats.new_tokens > 0 and final.stats.prompt_tokens > 0
    assert final.stats.time_to_first_token is not None
    assert "<|channel>" not in final.answer and "<turn|>" not in final.answer


def test_video_prompt_carries_true_timestamps(tiny_backend):
    inputs = build_inputs(tiny_backend.processor, PROMPTS["video"](), GenerationSettings())
    prompt = tiny_backend.processor.decode(inputs["input_ids"][0])
    assert "00:00 <|image>" in prompt and "01:00 <|image>" in prompt and "02:01 <|image>" in prompt


def test_image_budget_changes_the_soft_token_count(tiny_backend):
    counts = []
    for budget in (70, 280, 1120):
        inputs = build_inputs(tiny_backend.processor, PROMPTS["image"](), GenerationSettings(image_budget=budget))
        counts.append(int((inputs["input_ids"] == tiny_backend.processor.image_token_id).sum()))
    assert counts[0] < counts[1] < counts[2] <= 1120


def test_closing_the_stream_stops_generation(tiny_backend):
    stream = tiny_backend.stream(PROMPTS["text"](), GenerationSettings(max_new_tokens=100_000 // 50))
    next(stream)
    next(stream)
    assert generation_threads()
    stream.close()
    deadline = time.monotonic() + STOP_DEADLINE_S
    while generation_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not generation_threads()


def test_stopped_generation_makes_few_tokens(tiny_backend):
    """Counts the model's forward passes: one per token, including those made after `close()`."""
    limit = 2000
    steps = []
    hook = tiny_backend.model.register_forward_hook(lambda *_: steps.append(1))
    try:
        stream = tiny_backend.stream(PROMPTS["text"](), GenerationSettings(max_new_tokens=limit))
        next(stream)
        stream.close()
        assert wait_until(lambda: not generation_threads(), timeout=120)
    finally:
        hook.remove()
    assert 0 < len(steps) < limit // 10


def test_error_inside_generate_reaches_the_caller(tiny_backend, monkeypatch):
    def broken_generate(**kwargs):
        kwargs["streamer"].put(kwargs["input_ids"])  # the prompt, as generate does first
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(tiny_backend.model, "generate", broken_generate)
    with pytest.raises(GenerationError, match="device-side assert"):
        last_update(tiny_backend.stream(PROMPTS["text"](), GenerationSettings(max_new_tokens=8)))
    assert not generation_threads()


def test_out_of_memory_gets_a_clear_message(tiny_backend, monkeypatch):
    import torch

    def oom(**kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(tiny_backend.model, "generate", oom)
    with pytest.raises(GenerationError, match="ran out of memory"):
        last_update(tiny_backend.stream(PROMPTS["text"](), GenerationSettings(max_new_tokens=8)))


def test_prompt_longer_than_the_context_is_refused(tiny_backend):
    too_many = tiny_backend.capabilities.context_tokens
    with pytest.raises(InvalidInputError, match="tokens"):
        next(tiny_backend.stream(PROMPTS["text"](), GenerationSettings(max_new_tokens=too_many)))


def test_audio_on_a_model_without_audio_is_a_clear_capability_error(tiny_options):
    backend = ModelCache().get("tiny-moe", tiny_options)
    assert not backend.capabilities.audio
    with pytest.raises(CapabilityError, match="E2B, E4B and 12B"):
        next(backend.stream(PROMPTS["audio"](), GenerationSettings(max_new_tokens=4)))
    assert last_update(backend.stream(PROMPTS["image"](), GenerationSettings(max_new_tokens=4))).done


def test_thinking_and_system_prompt_reach_the_prompt(tiny_backend):
    from gemma_demo.engine.base import with_system_prompt

    settings = GenerationSettings(thinking=True, system_prompt="Answer in French.")
    messages = with_system_prompt(PROMPTS["text"](), settings)
    prompt = tiny_backend.processor.decode(build_inputs(tiny_backend.processor, messages, settings)["input_ids"][0])
    assert prompt.startswith("<bos><|turn>system\n<|think|>\nAnswer in French.<turn|>")


def test_a_fast_stream_is_sent_at_screen_rate(tiny_backend):
    settings = GenerationSettings(max_new_tokens=200)
    updates = list(tiny_backend.stream(PROMPTS["text"](), settings))
    final = updates[-1]
    assert updates[0].stats.new_tokens <= 2, "the first text waited for more"
    elapsed = final.stats.elapsed
    assert len(updates) <= elapsed / UPDATE_INTERVAL_S + 3 < final.stats.new_tokens
    assert final.answer.startswith(updates[-2].answer)


def test_a_slow_stream_passes_each_token_on_at_once(tiny_backend, monkeypatch):
    """The model makes its next token only once the caller has seen the last one: a stream that
    held a token back for company would wait for the next one, and the test would time out."""
    seen = queue.Queue()
    waited_in_vain = []

    def slow_generate(**kwargs):
        streamer = kwargs["streamer"]
        streamer.put(kwargs["input_ids"])
        for count, token in enumerate((300, 301, 302, 303), start=1):
            streamer.put(torch.tensor([token]))
            try:
                while seen.get(timeout=TOKEN_CEILING_S) < count:
                    pass
            except queue.Empty:
                waited_in_vain.append(count)
        streamer.end()

    monkeypatch.setattr(tiny_backend.model, "generate", slow_generate)
    updates = []
    for update in tiny_backend.stream(PROMPTS["text"](), GenerationSettings(max_new_tokens=8)):
        seen.put(update.stats.new_tokens)
        updates.append(update)
    assert waited_in_vain == [], "these tokens reached the caller only with the next one"
    assert [u.stats.new_tokens for u in updates] == [1, 2, 3, 4, 4] and updates[-1].done


def test_streamed_text_does_not_depend_on_how_tokens_were_chunked(tiny_backend):
    """Byte tokens decode together, so one more can rewrite what came before; the stream waits for them."""
    from gemma_demo.engine.local import _TextDecoder

    tokenizer = tiny_backend.processor.tokenizer
    euro = tokenizer.convert_tokens_to_ids(["<0xE2>", "<0x82>", "<0xAC>"])
    words = tokenizer.encode(" price in a shop", add_special_tokens=False)
    ids = words[:2] + euro + words[2:] + [euro[0], 7, euro[1]] + words + euro
    expected = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    assert "€" in expected
    rng = np.random.default_rng(0)
    for _ in range(50):
        cuts = sorted(rng.choice(np.arange(1, len(ids)), size=rng.integers(1, len(ids) - 1), replace=False))
        chunks = [list(chunk) for chunk in np.split(np.array(ids), cuts)]
        decoder = _TextDecoder(tokenizer, tiny_backend.byte_ids)
        text = "".join(decoder.add([int(i) for i in chunk], last=n == len(chunks) - 1) for n, chunk in enumerate(chunks))
        assert text == expected


def test_the_first_token_is_announced_even_before_it_makes_text(tiny_backend, monkeypatch):
    euro = tiny_backend.processor.tokenizer.convert_tokens_to_ids(["<0xE2>", "<0x82>", "<0xAC>"])

    def bytes_first(**kwargs):
        streamer = kwargs["streamer"]
        streamer.put(kwargs["input_ids"])
        for token in euro:
            streamer.put(torch.tensor([token]))
            time.sleep(2 * UPDATE_INTERVAL_S)
        streamer.end()

    monkeypatch.setattr(tiny_backend.model, "generate", bytes_first)
    updates = list(tiny_backend.stream(PROMPTS["text"](), GenerationSettings(max_new_tokens=8)))
    assert (updates[0].stats.new_tokens, updates[0].answer) == (1, "")
    assert updates[-1].done and updates[-1].answer == "€"
    assert all(u.answer in ("", "€") for u in updates)


@pytest.mark.parametrize("kind", ["image", "text"])
def test_an_answer_never_holds_a_media_placeholder(tiny_backend, monkeypatch, kind):
    """A model that would write `<|image|>` (the tiny one samples it now and then) must not:
    a restarted batch prefills the answer so far with the row's pictures, and one placeholder
    too many fails the whole batch ("Image features and image tokens do not match")."""
    from gemma_demo.engine.batching.requests import Request

    placeholders = (tiny_backend.processor.image_token_id, tiny_backend.processor.audio_token_id)
    forward = tiny_backend.model.forward

    @functools.wraps(forward)  # generate reads the forward's signature
    def preferring_placeholders(*args, **kwargs):
        out = forward(*args, **kwargs)
        out.logits[..., placeholders[0]] += 1e4
        out.logits[..., placeholders[1]] += 1e4
        return out

    received = []
    receive = Request.receive
    monkeypatch.setattr(tiny_backend.model, "forward", preferring_placeholders)
    monkeypatch.setattr(Request, "receive", lambda self, token, now: received.append(token) or receive(self, token, now))
    update = last_update(tiny_backend.stream(PROMPTS[kind](), GenerationSettings(sampling=False, max_new_tokens=4)))
    assert update.stats.new_tokens == 4
    assert len(received) == 4
    assert not set(received) & set(placeholders)
