"""P16-P19, P7 per setting and the accuracy rows: what `--quantize` gives a CPU user at the real E2B size.

Everything runs on the random-weight real-size E2B folder (`benchmarks.models.real_size_checkpoint`),
the same folder llama.cpp converts (`benchmarks.llama_cpp`):
- P16, in one process: the bf16 model's decode, then with its decoder layers swapped for int8
  and for int4 ones, in alternating pairs (the layers are kept side by side, so each pair shares
  the machine's load of its moment);
- P19: a 256-token text prompt read (one forward, as `llama-bench -p 256`) per setting;
- P7q, P7 per setting: the decode against the machine's copy bandwidth over the bytes a token reads;
- the profile of one decode step per setting: the time in matrix products and the rest;
- P17, P17b and P19 against `llama-bench` of the same folder (Q4_0 and BF16), right after;
- P18: the peak RSS of `python -m gemma_demo caption` per setting, each in a fresh process;
- Q1 and Q2, accuracy: logits of each setting against bf16 at real size, and greedy agreement
  over 128 tokens on the ~133M model.

Not part of pytest: `python -m benchmarks.quantized [--quick]`.
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from benchmarks.common import GB, ROOT_INPUT, Row, Target, median, not_measured, paired, spread
from benchmarks.engine_speed import CopyMeter, decode_seconds_per_token
from benchmarks.models import real_size_checkpoint, small_checkpoint
from benchmarks.real_size import run_cli
from gemma_demo.engine.loading import load_local_backend
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.quantize import (
    decoder_linears,
    quantize_decoder,
    quantized_linear,
    replace_module,
    weight_bytes,
)
from gemma_demo.engine.quantized_store import STORE_ENV

SETTINGS = ("int8", "int4")
P16_TARGET = Target(2.0, at_most=False)
P17_TARGET = Target(1.0, at_most=False)
P18_TARGET = Target(0.5)
P19_TARGET = Target(1.0, at_most=False)
P7_TARGET = Target(0.5, at_most=False)
PROMPT_TOKENS = 256  # llama-bench -p 256
DECODE_TOKENS = 16
AGREEMENT_TOKENS = 128
LLAMA_KINDS = {"off": "BF16", "int4": "Q4_0"}
MATRIX_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::mv", "aten::_weight_int4pack_mm_for_cpu",
              "aten::_weight_int8pack_mm")


@dataclass
class Variant:
    """One setting's decoder layers, by name; swapped into the model while it is measured."""

    setting: str
    layers: dict[str, nn.Module]


def variant(model: nn.Module, setting: str) -> Variant:
    """Quantized copies of `model`'s decoder layers; the model itself is left as it is."""
    layers = {}
    for name, linear in decoder_linears(model):
        plain = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        plain.weight, plain.bias = linear.weight, linear.bias
        quantized = quantized_linear(plain, setting)
        layers[name] = quantized if quantized is not None else linear
    return Variant(setting, layers)


class Swapper:
    """Puts one variant's layers into the model at a time."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.variants = {"off": Variant("off", dict(decoder_linears(model)))}

    def use(self, setting: str) -> nn.Module:
        for name, module in self.variants[setting].layers.items():
            replace_module(self.model, name, module)
        return self.model

    def read_per_token(self, setting: str) -> int:
        """Bytes a decode step reads: the decoder's layers as `setting` stores them, plus the
        other weights the text model reads per token (norms, scales), one row of each table."""
        from benchmarks.models import text_model

        text = text_model(self.use(setting))
        layers = list(self.variants[setting].layers.values())
        tables = [text.embed_tokens.weight]
        if getattr(text, "embed_tokens_per_layer", None) is not None:
            tables.append(text.embed_tokens_per_layer.weight)
        rows = sum(t.shape[1] * t.element_size() for t in tables)
        inside = {id(t) for m in layers for t in [*m.parameters(), *m.buffers()]} | {id(t) for t in tables}
        rest = sum(p.numel() * p.element_size() for p in text.parameters() if id(p) not in inside)
        return rest + rows + sum(weight_bytes(m) for m in layers)


def prompt_ids(processor, tokens: int) -> torch.Tensor:
    ids = processor.tokenizer(" ".join(["the"] * tokens), return_tensors="pt", add_special_tokens=False).input_ids
    return ids[:, :tokens]


def prefill_seconds(model: nn.Module, ids: torch.Tensor) -> float:
    started = time.perf_counter()
    with torch.no_grad():
        model(input_ids=ids, use_cache=True)
    return time.perf_counter() - started


def profile_step(model: nn.Module, ids: torch.Tensor) -> str:
    """Where one decode step's time goes: matrix products against the rest, and the top other ops."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
        step = {"input_ids": out.logits[:, -1:].argmax(-1), "past_key_values": out.past_key_values, "use_cache": True}
        model(**step)  # warm
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            started = time.perf_counter()
            model(**step)
            wall = time.perf_counter() - started
    events = prof.key_averages()
    matrix = sum(e.self_cpu_time_total for e in events if e.key in MATRIX_OPS) / 1e6
    others = sorted((e for e in events if e.key not in MATRIX_OPS), key=lambda e: -e.self_cpu_time_total)[:4]
    calls = sum(e.count for e in events)
    top = ", ".join(f"{e.key.removeprefix('aten::')} {e.self_cpu_time_total / 1e3:.0f} ms" for e in others)
    return (f"step {wall * 1e3:.0f} ms: matrix products {matrix * 1e3:.0f} ms ({matrix / wall:.0%}), "
            f"the rest {(wall - matrix) * 1e3:.0f} ms in {calls} op calls (top: {top})")


def logits_rows(swapper: Swapper, ids: torch.Tensor) -> list[Row]:
    """Q1: each setting's logits over a 64-token prompt against bf16's, at real size."""
    with torch.no_grad():
        expected = swapper.use("off")(input_ids=ids).logits.float()
        rows = []
        for setting in SETTINGS:
            got = swapper.use(setting)(input_ids=ids).logits.float()
            error = ((got - expected).norm() / expected.norm()).item()
            agree = (got.argmax(-1) == expected.argmax(-1)).float().mean().item()
            rows.append(Row("Q1", f"real-size E2B, {setting}: logits against bf16 over a 64-token prompt",
                            f"relative error {error:.3f}", note=f"top-1 agreement {agree:.0%} of positions"))
    return rows


def llama_rows(measured: dict[str, dict[str, float]]) -> list[Row]:
    """P17, P17b and P19: our figures against `llama-bench` on the same folder, run right after."""
    try:
        from benchmarks.llama_cpp import llama_bench, real_size_gguf
    except ImportError as error:
        return [not_measured("P17", "int4 decode vs llama.cpp Q4_0", P17_TARGET, str(error))]
    rows = []
    for setting, kind in LLAMA_KINDS.items():
        bench = llama_bench(real_size_gguf(kind))
        ours = measured[setting]
        rows.append(Row("P17" if setting == "int4" else "P17b",
                        f"real-size E2B decode, {setting if setting != 'off' else 'bf16'} in process vs llama.cpp {kind}",
                        f"{ours['decode']:.2f} tok/s", f"{bench.decode_tok_s:.2f} tok/s (llama-bench tg64, 2 threads)",
                        ours["decode"] / bench.decode_tok_s, P17_TARGET, "one after the other, same folder"))
        rows.append(Row("P19", f"real-size E2B prompt reading ({PROMPT_TOKENS} text tokens), "
                        f"{setting if setting != 'off' else 'bf16'} vs llama.cpp {kind}",
                        f"{ours['prompt']:.1f} tok/s", f"{bench.prompt_tok_s:.1f} tok/s (llama-bench pp256)",
                        ours["prompt"] / bench.prompt_tok_s, P19_TARGET))
    return rows


def kernel_rows(reps: int) -> list[Row]:
    """One E2B-shaped linear (1536 → 12288), one row, as the app runs it per setting.

    What the kernels themselves give, before the rest of a decode step dilutes it.
    """
    from gemma_demo.engine.cpu_decode import speed_up_cpu_decoding

    torch.manual_seed(0)
    holder = nn.Sequential(nn.Linear(1536, 12288, bias=False, dtype=torch.bfloat16))
    speed_up_cpu_decoding(holder)  # bf16 as the app runs it: ATen's matrix-vector kernel
    x = torch.randn(1, 1, 1536, dtype=torch.bfloat16)
    calls = 50

    def timed(module: nn.Module) -> Callable[[], float]:
        def run() -> float:
            started = time.perf_counter()
            with torch.no_grad():
                for _ in range(calls):
                    module(x)
            return (time.perf_counter() - started) / calls
        return run

    rows = []
    for setting in SETTINGS:
        plain = nn.Linear(1536, 12288, bias=False, device="meta", dtype=torch.bfloat16)
        plain.weight = holder[0].weight
        quantized = quantized_linear(plain, setting)
        result = paired(timed(quantized), timed(holder[0]), reps)
        rows.append(Row("P16k", f"one 1536→12288 linear, one row: {setting} ÷ bf16 (speed)",
                        f"{result.a_median * 1e6:.0f} µs = {weight_bytes(quantized) / result.a_median / GB:.1f} GB/s",
                        f"{result.b_median * 1e6:.0f} µs = {weight_bytes(holder) / result.b_median / GB:.1f} GB/s",
                        result.b_median / result.a_median, note=f"{spread(result)}; {calls} calls per timing"))
    return rows


def speed_rows(reps: int) -> tuple[list[Row], dict[str, dict[str, float]]]:
    backend = load_local_backend(str(real_size_checkpoint()), LoadOptions())
    model, processor = backend.model, backend.processor
    swapper = Swapper(model)
    for setting in SETTINGS:
        swapper.variants[setting] = variant(model, setting)
    short, long = prompt_ids(processor, 8), prompt_ids(processor, PROMPT_TOKENS)
    meter = CopyMeter("cpu")

    def decode(setting: str) -> Callable[[], float]:
        return lambda: decode_seconds_per_token(swapper.use(setting), short, DECODE_TOKENS)

    rows, measured = [], {"off": {}}
    bandwidth = median([meter.bandwidth() for _ in range(3)])
    for setting in SETTINGS:
        result = paired(decode(setting), decode("off"), reps)
        measured[setting] = {"decode": 1 / result.a_median}
        measured["off"].setdefault("decode", 1 / result.b_median)
        rows.append(Row("P16", f"real-size E2B decode, {setting} ÷ bf16 (tok/s)", f"{1 / result.a_median:.2f} tok/s",
                        f"{1 / result.b_median:.2f} tok/s", result.b_median / result.a_median,
                        P16_TARGET if setting == "int4" else None, f"{spread(result)}; ABBA, {reps} pairs"))
    for setting in ("off", *SETTINGS):
        prefill_seconds(swapper.use(setting), long)  # warm
        measured[setting]["prompt"] = PROMPT_TOKENS / median([prefill_seconds(model, long) for _ in range(2)])
        per_token = swapper.read_per_token(setting)
        ideal = per_token / bandwidth
        name = setting if setting != "off" else "bf16"
        rows.append(Row("P7q", f"real-size E2B decode vs bandwidth, {name}",
                        f"{measured[setting]['decode']:.2f} tok/s",
                        f"{1 / ideal:.2f} tok/s = {per_token / GB:.2f} GB/token ÷ {bandwidth / GB:.1f} GB/s copy",
                        ideal * measured[setting]["decode"], P7_TARGET,
                        profile_step(swapper.use(setting), short)))
    rows += logits_rows(swapper, prompt_ids(processor, 64))
    swapper.use("off")
    return rows, measured


def memory_rows() -> list[Row]:
    """P18 and what a CPU user sees: a 280-budget caption per setting, each a fresh CLI process.

    Its first token, its decode speed and the process's peak RSS are the README's figures. A
    quantized setting runs twice: the first start quantizes and keeps the layers on disk
    (`engine/quantized_store.py`), the second maps them, as every later start does.
    """
    folder = str(real_size_checkpoint())
    arguments = ["caption", str(ROOT_INPUT / "scene.jpg"), "--model", folder, "--image-budget", "280",
                 "--max-new-tokens", "24"]
    runs, first_starts = {}, {}
    kept = os.environ.get(STORE_ENV)
    with tempfile.TemporaryDirectory() as store:
        os.environ[STORE_ENV] = store  # an empty store: the first start really quantizes
        try:
            for setting in ("off", *SETTINGS):
                for start in ("first", "later") if setting != "off" else ("later",):
                    run = run_cli([*arguments, "--quantize", setting])
                    if run.error:
                        raise RuntimeError(f"caption with --quantize {setting}: {run.error}")
                    (first_starts if start == "first" else runs)[setting] = run
        finally:
            os.environ.pop(STORE_ENV) if kept is None else os.environ.update({STORE_ENV: kept})
    rows = []
    for setting, run in runs.items():
        stats = run.line["stats"]
        rate = stats["tokens_per_second"]
        peak, base = run.peak_rss, runs["off"].peak_rss
        first = first_starts.get(setting)
        rows.append(Row("P18",
                        f"real-size E2B caption through the CLI, {setting if setting != 'off' else 'bf16'}"
                        + (" (peak RSS ÷ bf16)" if setting != "off" else ""),
                        f"peak RSS {peak / GB:.2f} GB", f"{base / GB:.2f} GB" if setting != "off" else "",
                        peak / base if setting != "off" else None, P18_TARGET if setting == "int4" else None,
                        f"first token {stats['time_to_first_token']:.1f} s, "
                        f"{f'{rate:.2f} tok/s' if rate else 'no decode rate'}, wall {run.wall_s:.0f} s with loading"
                        + (f"; the first start, which quantizes and keeps the layers: peak RSS "
                           f"{first.peak_rss / GB:.2f} GB, wall {first.wall_s:.0f} s" if first else "")))
    return rows


def accuracy_rows() -> list[Row]:
    """Q1: real-size logits per setting against bf16; Q2: greedy agreement over 128 tokens, ~133M model.

    Random weights pass on any change of a weight: Gaussian noise of the size of int4's
    rounding step (7.7% of a weight's spread) moved the tiny model's logits by 85%. So the
    rows are figures next to that noise, not pass/fail.
    """
    rows = []
    checkpoint = small_checkpoint()
    backend = load_local_backend(str(checkpoint.path), LoadOptions(dtype="bfloat16"))
    ids = prompt_ids(backend.processor, 16)
    with torch.no_grad():
        greedy = backend.model.generate(input_ids=ids, max_new_tokens=AGREEMENT_TOKENS,
                                        min_new_tokens=AGREEMENT_TOKENS, do_sample=False)
        expected = backend.model(input_ids=greedy).logits[:, ids.shape[1] - 1:-1].float()
        for setting in SETTINGS:
            model = copy.deepcopy(backend.model)
            quantize_decoder(model, setting)
            got = model(input_ids=greedy).logits[:, ids.shape[1] - 1:-1].float()
            agree = (got.argmax(-1) == greedy[:, ids.shape[1]:]).float().mean().item()
            error = ((got - expected).norm() / expected.norm()).item()
            rows.append(Row("Q2", f"{checkpoint.parameters / 1e6:.0f}M model, {setting}: greedy agreement with bf16 "
                            f"over {AGREEMENT_TOKENS} tokens", f"{agree:.0%}",
                            note=f"logits relative error {error:.3f}; teacher-forced on bf16's own greedy answer"))
    return rows


def run(quick: bool = False) -> list[Row]:
    rows = kernel_rows(reps=5)
    more, measured = speed_rows(reps=3 if quick else 5)
    rows += more
    gc.collect()
    rows += llama_rows(measured)
    rows += memory_rows()
    rows += accuracy_rows()
    return rows


if __name__ == "__main__":
    from benchmarks.report import print_rows

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    print_rows(run(quick=parser.parse_args().quick))
