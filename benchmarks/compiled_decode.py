"""P16c: does a compiled decode step pay on a CPU? The real-size E2B with `--quantize int4`.

The issue's plan for the per-token overhead outside the matrix products (about a third of an
int4 step) was a static KV cache and a compiled decode step. transformers has both: `generate`
with `cache_implementation="static"` compiles the model's forward with `torch.compile` (on a
CPU once its `CompileConfig` allows every device). Here that path runs side by side with the
app's eager decode (a dynamic cache, as `LocalBackend` runs it), on the same loaded model:
- the compiled run's tok/s after its first call, against eager, in ABBA pairs;
- the first call's time (what compiling costs), and the graphs dynamo compiled for it. The
  static cache of a sliding-window layer compares a Python int with its length on every
  update (`StaticSlidingWindowLayer.update` in transformers 5.24), so each step recompiles
  until dynamo's recompile limit and then runs eagerly.
For the compiled run the app's attention gate (`engine/cpu_decode.py`, a lock around `sdpa`)
is taken out, as a compiled model would need; the int4 layers do not use the gate.

Not part of pytest: `python -m benchmarks.compiled_decode [--quick]`.
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import CompileConfig
from transformers.modeling_utils import AttentionInterface

from benchmarks.common import Row, in_thread, paired, seconds, spread
from benchmarks.engine_speed import GREEDY, _TokenClock
from benchmarks.models import real_size_checkpoint
from benchmarks.quantized import prompt_ids
from gemma_demo.engine import cpu_decode
from gemma_demo.engine.loading import load_local_backend
from gemma_demo.engine.options import LoadOptions

DECODE_TOKENS = 24


def decode_seconds(model, ids: torch.Tensor, **extra) -> float:
    """Seconds per decoded token after the first two, `generate` in a fresh thread as the engine runs it."""
    clock = _TokenClock()

    def run() -> None:
        with torch.inference_mode():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=DECODE_TOKENS,
                           min_new_tokens=DECODE_TOKENS, streamer=clock, **GREEDY, **extra)

    in_thread(run)
    decoded = clock.times[3:]
    return (decoded[-1] - clock.times[2]) / len(decoded)


def compiled_kwargs() -> dict:
    config = CompileConfig(fullgraph=False, dynamic=False)
    config._compile_all_devices = True  # transformers compiles on CUDA-like devices only unless told
    return {"cache_implementation": "static", "compile_config": config}


def run(quick: bool = False) -> list[Row]:
    from torch._dynamo.utils import counters

    backend = load_local_backend(str(real_size_checkpoint()), LoadOptions(quantize="int4"))
    model, ids = backend.model, prompt_ids(backend.processor, 8)
    gated = AttentionInterface._global_mapping["sdpa"]
    ungated = gated.attention if isinstance(gated, cpu_decode._GatedAttention) else gated
    extra = compiled_kwargs()

    def compiled() -> float:
        AttentionInterface.register("sdpa", ungated)
        try:
            return decode_seconds(model, ids, **extra)
        finally:
            AttentionInterface.register("sdpa", gated)

    def eager() -> float:
        return decode_seconds(model, ids)

    started = time.perf_counter()
    compiled()
    first_call = time.perf_counter() - started
    graphs = counters["stats"]["unique_graphs"]
    result = paired(compiled, eager, 2 if quick else 4)
    return [Row("P16c", "real-size E2B int4 decode: transformers' static cache + torch.compile ÷ the app's eager "
                "decode (tok/s)", f"{1 / result.a_median:.2f} tok/s", f"{1 / result.b_median:.2f} tok/s",
                result.b_median / result.a_median, None,
                f"{spread(result)}; ABBA, after the compiling call: {seconds(first_call)} for "
                f"{DECODE_TOKENS} tokens, {graphs} graphs compiled (dynamo's recompile limit "
                f"{torch._dynamo.config.recompile_limit})")]


if __name__ == "__main__":
    from benchmarks.report import print_rows

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    print_rows(run(parser.parse_args().quick))
