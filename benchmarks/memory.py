"""P4: loading a model costs little more memory than its weights, and switching models leaks none.

Peak memory decides whether a model fits on a machine at all, so it is measured where
it happens: in a fresh process per load (a process's peak cannot be reset), with RSS
sampled every 2 ms and checked against `ru_maxrss`. Also reported: the peak memory a
32-frame video prompt adds on top of the loaded tiny model.

`python -m benchmarks.memory` runs this group alone; `--worker ...` is the measured child.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import CACHE_DIR, REPS, PeakRss, Row, Target, median, mib, rss

LOAD_TARGET, SWITCH_TARGET = Target(1.3), Target(1.1)
SWITCHES = 5
KIB = 1024
WORKER_TIMEOUT_S = 600
ENV = {**os.environ, "TQDM_DISABLE": "1"}


def _import_loading_code() -> None:
    """Import everything a load needs first, so that import memory is not counted as load memory."""
    import transformers.models.gemma4.modeling_gemma4  # noqa: F401
    from transformers import AutoModelForMultimodalLM, AutoProcessor  # noqa: F401

    import gemma_demo.engine.local  # noqa: F401


def touch(model) -> None:
    """Read every weight once, as the first request does.

    transformers maps float32 safetensors into memory without copying them, so right
    after loading the weights are not resident yet; reading them is what makes them so.
    """
    import torch

    with torch.inference_mode():
        for parameter in model.parameters():
            parameter.sum()


def _lifetime_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB


def worker_load(path: str) -> dict:
    from gemma_demo.engine.options import LoadOptions
    from gemma_demo.engine.loading import load_local_backend

    _import_loading_code()
    before, peak_before = rss(), _lifetime_peak()
    with PeakRss() as loading:
        backend = load_local_backend(path, LoadOptions())
    with PeakRss() as first_use:
        touch(backend.model)
    # `ru_maxrss` catches peaks between samples, but only once it has risen past any earlier one.
    lifetime = _lifetime_peak()
    peak = max(first_use.peak, loading.peak, lifetime if lifetime > peak_before else 0)
    return {"before": before, "loading": loading.peak, "peak": peak, "after": rss()}


def worker_loads(path: str, reps: str) -> dict:
    """`reps` loads, each in a child forked from this process once the libraries are imported.

    A forked child starts as fresh as a new interpreter as far as the load is concerned
    (no model, no torch threads yet) without paying seconds of imports per repetition.
    """
    _import_loading_code()
    answers = []
    for _ in range(int(reps)):
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(read_end)
            os.write(write_end, json.dumps(worker_load(path)).encode())
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as answer:
            answers.append(json.loads(answer.read()))
        os.waitpid(child, 0)
    return {"loads": answers}


def worker_switch(first: str, second: str) -> dict:
    from gemma_demo.engine.options import LoadOptions
    from gemma_demo.engine.cache import ModelCache

    _import_loading_code()
    cache = ModelCache()
    touch(cache.get(first, LoadOptions()).model)
    loaded = rss()
    after = []
    for switch in range(1, SWITCHES + 1):
        touch(cache.get(second if switch % 2 else first, LoadOptions()).model)
        after.append(rss())
    cache.clear()
    return {"first": loaded, "after": after}


def worker_video(clip: str) -> dict:
    """Peak RSS added by one video answer (32 frames, 8 tokens) over the loaded tiny model."""
    from gemma_demo.engine.base import last_update
    from gemma_demo.engine.options import LoadOptions
    from gemma_demo.engine.cache import ModelCache
    from gemma_demo.engine.settings import GenerationSettings
    from gemma_demo.tasks.video_question import describe_video

    backend = ModelCache().get("tiny", LoadOptions(tiny_root=CACHE_DIR / "tiny"))
    settings = GenerationSettings(max_new_tokens=8)
    ask = lambda: last_update(r.update for r in describe_video(backend, clip, "What happens?", settings=settings))
    ask()
    added = []
    for _ in range(REPS):
        before = rss()
        with PeakRss() as peak:
            ask()
        added.append(peak.peak - before)
    return {"added": added, "prompt_tokens": ask().stats.prompt_tokens}


def _child(*args: str) -> dict:
    """Run one worker in a fresh interpreter; its last stdout line is its JSON answer."""
    command = [sys.executable, "-m", "benchmarks.memory", "--worker", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=WORKER_TIMEOUT_S, check=False,
                          cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        raise RuntimeError(f"memory worker {args[0]} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker_switch_then_video(first: str, second: str, clip: str) -> dict:
    return {**worker_switch(first, second), **worker_video(clip)}


def run(quick: bool = False, reps: int = REPS) -> list[Row]:
    """The two children run side by side: each measures only its own process's memory."""
    from benchmarks.models import small_checkpoint
    from benchmarks.video_prep import SHORT_SECONDS, clip

    first, second = small_checkpoint(0), small_checkpoint(1)
    jobs = [("loads", str(first.path), str(reps)),
            ("switch_then_video", str(first.path), str(second.path), str(clip(SHORT_SECONDS)))]
    with ThreadPoolExecutor(len(jobs)) as pool:
        (loads, other) = list(pool.map(lambda job: _child(*job), jobs))
    return [load_row(loads["loads"], first), switch_row(other), video_row(other)]


def load_row(loads: list[dict], checkpoint) -> Row:
    peaks = [a["peak"] - a["before"] for a in loads]
    return Row("P4", f"peak RSS loading a {checkpoint.parameters / 1e6:.0f}M fp32 model and reading its weights once "
               "vs its safetensors size", mib(median(peaks)), mib(checkpoint.file_bytes),
               median([p / checkpoint.file_bytes for p in peaks]), LOAD_TARGET,
               f"{len(loads)} freshly forked processes; the load alone peaks at "
               f"{mib(median([a['loading'] - a['before'] for a in loads]))} (weights stay memory-mapped until "
               f"read); kept {mib(median([a['after'] - a['before'] for a in loads]))}")


def switch_row(switch: dict) -> Row:
    after_five = switch["after"][-1]
    return Row("P4", f"RSS after {SWITCHES} model switches (ModelCache, two such models, weights read) vs after "
               "the first load", mib(after_five), mib(switch["first"]), after_five / switch["first"], SWITCH_TARGET,
               "after each switch: " + ", ".join(mib(x) for x in switch["after"]))


def video_row(video: dict) -> Row:
    return Row("M1", "peak RSS a 32-frame 10-s 720p video prompt adds (tiny model, 8 tokens)",
               mib(median(video["added"])), note=f"{video['prompt_tokens']} prompt tokens; median of {REPS}")


WORKERS = {"loads": worker_loads, "switch_then_video": worker_switch_then_video}

if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        print(json.dumps(WORKERS[sys.argv[2]](*sys.argv[3:])), flush=True)
    else:
        from benchmarks.report import print_rows

        print_rows(run(quick="--quick" in sys.argv))
