"""P1, P2, P7: what the streaming engine costs over bare `generate`, and how near decoding
comes to the memory-bandwidth limit.

The engine adds a worker thread, a text streamer, a stop check per token and prompt
rendering; P1 and P2 show that none of it is visible next to the model itself. P7 asks
whether the model itself runs as fast as the hardware allows. Runs unchanged on CUDA,
where it also measures the real E2B and E4B architectures.

`python -m benchmarks.engine_speed [--quick]` runs this group alone.
"""

from __future__ import annotations

import dataclasses
import gc
import sys
import time
from dataclasses import dataclass

import psutil
import torch
from transformers.generation.streamers import BaseStreamer

from benchmarks.common import (
    CACHE_DIR,
    GB,
    Paired,
    Row,
    Target,
    in_thread,
    median,
    not_measured,
    paired,
    seconds,
    spread,
)
from benchmarks.models import bytes_read_per_token, reference_bytes, reference_model, small_checkpoint
from gemma_demo.engine.cpu_decode import speed_up_cpu_decoding
from gemma_demo.engine.base import with_system_prompt
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.local import LocalBackend, build_inputs
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.loading import load_local_backend
from gemma_demo.engine.registry import capabilities_from_config
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.tiny.model import build_processor

P1_TARGET, P2_TARGET, P7_TARGET = Target(1.05), Target(1.10), Target(0.5, at_most=False)
PROMPT = (
    "You are looking at a photo of a small house next to a large tree. Describe the picture "
    "for a person who cannot see it: the house, the tree, the sky, the colours, the light, "
    "where things are (left, right, top, bottom, center) and what the scene shows. Then say "
    "in one sentence what the picture is about, and write a short title for it."
)
DECODE_PROMPT = "Describe the picture."  # P7 times decoding only; a long prefill would just cost time
GREEDY = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
COPY_BYTES = 2**30
MEMORY_HEADROOM = 1.3  # the model, the 2 GiB copy test and the process itself


@dataclass(frozen=True)
class Subject:
    """A loaded model to measure, and how many tokens make a fair P1 run for it."""

    label: str
    backend: LocalBackend
    new_tokens: int


class _ForcedLength:
    """Makes every `generate` of the engine produce exactly `max_new_tokens` tokens.

    The engine has no setting for a minimum length, and random weights may pick an end
    token at any point; forcing the count makes engine and baseline do equal work.
    """

    def __init__(self, model):
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)

    def generate(self, **kwargs):
        return self._model.generate(**kwargs, min_new_tokens=kwargs["max_new_tokens"])


class _TokenClock(BaseStreamer):
    """Notes when each token leaves `generate` (the first `put` is the prompt)."""

    def __init__(self):
        self.times: list[float] = []

    def put(self, value) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def messages() -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}]


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bare_generate(model, inputs, new_tokens: int, streamer=None):
    """`generate` as a script would call it, in a fresh thread as the engine does."""

    def run():
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                 streamer=streamer, **GREEDY)
        synchronize()
        return out

    return in_thread(run)


def prepared_inputs(backend: LocalBackend, settings: GenerationSettings):
    return build_inputs(backend.processor, with_system_prompt(messages(), settings), settings).to(
        backend.model.device
    )


def streamed_generation(subject: Subject, reps: int) -> Row:
    """P1: a whole streamed answer through the engine against `generate` on the same inputs."""
    settings = GenerationSettings(max_new_tokens=subject.new_tokens)
    forced = dataclasses.replace(subject.backend, model=_ForcedLength(subject.backend.model))
    inputs = prepared_inputs(subject.backend, settings)
    expected = inputs["input_ids"].shape[1] + subject.new_tokens

    def engine() -> float:
        started = time.perf_counter()
        for update in forced.stream(messages(), settings):
            pass
        assert update.stats.new_tokens == subject.new_tokens, update.stats
        return time.perf_counter() - started

    def bare() -> float:
        started = time.perf_counter()
        out = bare_generate(subject.backend.model, inputs, subject.new_tokens)
        assert out.shape[1] == expected, out.shape
        return time.perf_counter() - started

    result = paired(engine, bare, reps)
    rate = subject.new_tokens / result.b_median
    return Row("P1", f"{subject.label}: streamed generation, {subject.new_tokens} tokens (engine vs generate)",
               seconds(result.a_median), f"{seconds(result.b_median)} ({rate:.0f} tok/s)", result.ratio, P1_TARGET,
               spread(result))


def first_token(subject: Subject, reps: int) -> Row:
    """P2: from the call to the first text the caller sees, against prefill plus one token.

    The baseline also renders the prompt (untimed), so the note can say how much of the
    gap is the processor, which any caller pays, rather than the streaming machinery.
    """
    settings = GenerationSettings(max_new_tokens=subject.new_tokens)
    first_visible: list[int] = []
    rendering: list[float] = []

    def engine() -> float:
        started = time.perf_counter()
        stream = subject.backend.stream(messages(), settings)
        update = next(stream)
        elapsed = time.perf_counter() - started
        first_visible.append(update.stats.new_tokens)
        stream.close()
        return elapsed

    def bare() -> float:
        started = time.perf_counter()
        inputs = prepared_inputs(subject.backend, settings)
        rendered = time.perf_counter()
        bare_generate(subject.backend.model, inputs, 1)
        rendering.append(rendered - started)
        return time.perf_counter() - rendered

    result = paired(engine, bare, reps)
    with_processor = median([a / (b + r) for a, b, r in zip(result.a, result.b, rendering[-reps:])])
    note = (f"{spread(result)}; first text with token {max(first_visible)}; rendering the prompt takes "
            f"{seconds(median(rendering))}, ratio {with_processor:.2f} against processor + prefill")
    return Row("P2", f"{subject.label}: time to first streamed token (engine vs prefill + 1 token)",
               seconds(result.a_median), seconds(result.b_median), result.ratio, P2_TARGET, note)


class CopyMeter:
    """Copy bandwidth of `device`: bytes read plus bytes written per second, over a 1 GiB tensor."""

    def __init__(self, device: str):
        self.source = torch.empty(COPY_BYTES // 4, dtype=torch.float32, device=device).uniform_()
        self.target = torch.empty_like(self.source)
        self.copies = 20 if device == "cuda" else 2
        self.target.copy_(self.source)

    def bandwidth(self) -> float:
        synchronize()
        started = time.perf_counter()
        for _ in range(self.copies):
            self.target.copy_(self.source)
        synchronize()
        return 2 * COPY_BYTES * self.copies / (time.perf_counter() - started)


def decode_seconds_per_token(model, input_ids, new_tokens: int) -> float:
    clock = _TokenClock()
    bare_generate(model, {"input_ids": input_ids}, new_tokens, streamer=clock)
    decoded = clock.times[2:]
    return (decoded[-1] - clock.times[1]) / len(decoded)


def decode_bandwidth(name: str, device: str, text_only: bool, reps: int) -> Row:
    """P7: decode tokens/s of a real architecture against what the memory bandwidth allows."""
    processor = build_processor()
    model = reference_model(name, device, torch.bfloat16, text_only=text_only, vocab=len(processor.tokenizer))
    if device == "cpu":
        speed_up_cpu_decoding(model)  # as `load_local_backend` does for every CPU model
    per_token = bytes_read_per_token(model)
    input_ids = processor.tokenizer(DECODE_PROMPT, return_tensors="pt").input_ids.to(device)
    new_tokens = 64 if device == "cuda" else (4 if text_only else 12)
    result, bandwidth = _decode_against_copy(model, input_ids, new_tokens, per_token, reps)
    what = f"{name.upper()} {'text decoder' if text_only else 'full model'} bf16 on {device}: decode vs bandwidth"
    return Row("P7", what, f"{1 / result.b_median:.2f} tok/s",
               f"{1 / result.a_median:.2f} tok/s = {per_token / GB:.2f} GB/token ÷ {bandwidth / GB:.1f} GB/s copy",
               result.ratio, P7_TARGET, f"ratio = fraction of the bandwidth limit reached; {spread(result)}")


def _decode_against_copy(model, input_ids, new_tokens: int, per_token: int, reps: int) -> tuple[Paired, float]:
    """Pairs one copy-bandwidth measurement with one decode measurement per repetition.

    Both then see the same machine load; A is the ideal seconds per token at the
    bandwidth just measured, B the measured seconds per token, so A/B is the fraction.
    """
    meter, bandwidths = CopyMeter(model.device.type), []

    def ideal() -> float:
        bandwidths.append(meter.bandwidth())
        return per_token / bandwidths[-1]

    decode_seconds_per_token(model, input_ids, 2)  # warm-up on the cheap: one decode step
    result = paired(ideal, lambda: decode_seconds_per_token(model, input_ids, new_tokens), reps, warmup=0)
    return result, median(bandwidths)


def subjects(device: str) -> list[Subject]:
    """The tiny model and the ~133M one, loaded the app's way; on CUDA also E2B and E4B."""
    tiny = ModelCache().get("tiny", LoadOptions(tiny_root=CACHE_DIR / "tiny"))
    checkpoint = small_checkpoint()
    small = load_local_backend(str(checkpoint.path), LoadOptions())
    dtype = str(small.model.dtype).removeprefix("torch.")
    found = [Subject("tiny", tiny, 128),
             Subject(f"{checkpoint.parameters / 1e6:.0f}M E2B-like {dtype}", small, 128 if device == "cuda" else 16)]
    if device == "cuda":
        found += [Subject(name.upper(), reference_backend(name), 128) for name in ("e2b", "e4b")]
    return found


def reference_backend(name: str) -> LocalBackend:
    processor = build_processor()
    tokenizer = processor.tokenizer
    model = reference_model(name, "cuda", torch.bfloat16, vocab=len(tokenizer))
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids(["<eos>", "<turn|>"])
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    memory = sum(p.numel() * p.element_size() for p in model.parameters())
    return LocalBackend(name.upper(), model, processor, capabilities_from_config(model.config), memory)


def run(quick: bool = False, reps: int = 5) -> list[Row]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows: list[Row] = []
    for subject in subjects(device):
        rows += [streamed_generation(subject, reps), first_token(subject, reps)]
    del subject
    gc.collect()
    for name in ("e2b", "e4b") if device == "cuda" else ("e2b",):
        text_only = quick and device == "cpu"
        needed = reference_bytes(name, text_only)
        if device == "cpu" and needed * MEMORY_HEADROOM > psutil.virtual_memory().available:
            rows.append(not_measured("P7", f"{name.upper()} decode vs bandwidth", P7_TARGET,
                                     f"needs {needed / GB:.1f} GB of free memory"))
            continue
        rows.append(decode_bandwidth(name, device, text_only, reps))
    return rows


if __name__ == "__main__":
    from benchmarks.report import print_rows

    print_rows(run(quick="--quick" in sys.argv))
