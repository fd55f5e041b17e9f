"""P13c: `--compile` at the real E2B size: the vision tower's layers compiled against eager.

The real E2B towers (random bf16 weights, `benchmarks.towers.real_towers`) in the dtype the app
picks here, a 280-budget picture:
- the compiled layers against the same tower eager, in ABBA pairs, each pass in a fresh thread
  as the engine runs it (both copies in one process);
- what the first call costs, in fresh processes sharing a new inductor cache: the first with
  the cache empty (every start before the first), the second reading what the first kept
  (every later start). `--compile` pays this at load, on a small picture.

Not part of pytest: `python -m benchmarks.compiled_towers [--quick]`.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import Row, in_thread, paired, seconds, spread, timed
from benchmarks.towers import P13_BUDGET, as_the_app_runs_them, image_inputs, real_towers
from gemma_demo.engine.compiled_towers import CACHE_ENV, compile_layers
from gemma_demo.tiny.model import build_processor

ROOT = Path(__file__).resolve().parent.parent


def encoder(towers, inputs: dict):
    def run() -> None:
        with torch.inference_mode():
            towers.encode_image(inputs)

    return timed(lambda: in_thread(run))


def compiled_and_eager() -> tuple[object, object, dict]:
    subject = as_the_app_runs_them("E2B", real_towers())
    compiled = copy.deepcopy(subject.app)
    compile_layers(list(compiled.vision_tower.encoder.layers))
    return compiled, subject.app, image_inputs(build_processor(), P13_BUDGET)


def first_call_seconds() -> float:
    """In this (fresh) process: the first compiled pass, compiling included."""
    compiled, _, inputs = compiled_and_eager()
    return encoder(compiled, inputs)()


def first_call_in_child(cache: str) -> float:
    done = subprocess.run([sys.executable, "-m", "benchmarks.compiled_towers", "--first-call"], cwd=ROOT,
                          env={**os.environ, CACHE_ENV: cache}, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the first-call child exited {done.returncode}: {done.stderr[-300:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[Row]:
    with tempfile.TemporaryDirectory() as cache:
        cold, warm = first_call_in_child(cache), first_call_in_child(cache)
        os.environ[CACHE_ENV] = cache
        compiled, eager, inputs = compiled_and_eager()
        started = time.perf_counter()
        encoder(compiled, inputs)()
        here = time.perf_counter() - started
        result = paired(encoder(compiled, inputs), encoder(eager, inputs), 2 if quick else 4, warmup=0)
    dtype = next(eager.vision_tower.parameters()).dtype
    name = str(dtype).removeprefix("torch.")
    return [Row("P13c", f"E2B vision tower + projection, one {P13_BUDGET}-budget picture, {name} as the app runs "
                "it: layers compiled (`--compile`) ÷ eager", seconds(result.a_median),
                seconds(result.b_median), result.b_median / result.a_median, None,
                f"{spread(result)}; ABBA, {2 if quick else 4} pairs; the first compiled call in a fresh process "
                f"{seconds(cold)} with inductor's cache empty, {seconds(warm)} with it kept ({seconds(here)} "
                f"in this process after those)")]


if __name__ == "__main__":
    from benchmarks.report import print_rows

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--first-call", action="store_true", help="print the first compiled pass's seconds (for `run`)")
    arguments = parser.parse_args()
    if arguments.first_call:
        print(json.dumps(first_call_seconds()))
    else:
        print_rows(run(arguments.quick))
