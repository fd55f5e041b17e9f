"""The experiments behind the fixes for missed targets.

Nothing here changes the app: an experiment swaps one piece in for the duration of a
measurement (by monkeypatching) and measures it side by side with the code as it is, so
the report can say what a fix buys, or would buy, before anyone writes it. Not part of
`--quick`.

`python -m benchmarks.experiments` runs them; `python -m benchmarks.run_all` includes them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from benchmarks.common import CACHE_DIR, ROOT_INPUT, Row, paired, seconds, spread, timed
from benchmarks.video_prep import LONG_SECONDS, NUM_FRAMES, clip
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.options import LoadOptions
from gemma_demo.media import video_sampling

REPS = 7


@contextmanager
def patched(owner, name: str, value) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


def keyframe_snapping(reps: int) -> list[Row]:
    """X2 (for P3): the 10-minute clip sampled as the app does (keyframe snapping) against exact frames."""
    long = clip(LONG_SECONDS)
    sampling = video_sampling.FrameSampling(num_frames=NUM_FRAMES)

    def exact() -> float:
        with patched(video_sampling, "SNAP_SHARE", 0.0):
            return timed(lambda: video_sampling.sample_video(long, sampling))()

    result = paired(exact, timed(lambda: video_sampling.sample_video(long, sampling)), reps)
    return [Row("X2", "P3 10-min clip, 32 frames: exact frames (snapping off) vs the app's keyframe snapping",
                seconds(result.a_median), seconds(result.b_median), result.ratio,
                note=f"ratio = speed-up snapping gives P3; {spread(result)}")]


# Runs in a bare interpreter (not via `benchmarks`, which sets the wait policy): median seconds of
# three 128-token tiny streams, after one warm-up.
POLICY_PROBE = """
import statistics, sys, time
from pathlib import Path
from gemma_demo.engine.base import last_update
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.settings import GenerationSettings
backend = ModelCache().get("tiny", LoadOptions(tiny_root=Path(sys.argv[1])))
chat = [{"role": "user", "content": [{"type": "text", "text": "Tell me a long story."}]}]
settings = GenerationSettings(max_new_tokens=128)
def once():
    started = time.perf_counter()
    last_update(backend.stream(chat, settings))
    return time.perf_counter() - started
once()
print(statistics.median(once() for _ in range(3)))
"""


def wait_policy(reps: int) -> list[Row]:
    """X3: the same streams under libgomp's default wait policy and under OMP_WAIT_POLICY=PASSIVE."""
    def probe(policy: str | None) -> Callable[[], float]:
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        env.update({"OMP_WAIT_POLICY": policy} if policy else {})

        def run() -> float:
            done = subprocess.run([sys.executable, "-c", POLICY_PROBE, str(CACHE_DIR / "tiny")], env=env,
                                  cwd=ROOT_INPUT.parent, capture_output=True, text=True, check=True)
            return float(done.stdout.strip().splitlines()[-1])
        return run

    result = paired(probe(None), probe("PASSIVE"), reps, warmup=0)
    return [Row("X3", "tiny 128-token stream: libgomp's default wait policy vs OMP_WAIT_POLICY=PASSIVE",
                seconds(result.a_median), seconds(result.b_median), result.ratio,
                note=f"ratio = slow-down of the default; {spread(result)}; machine load varies between pairs")]


def run(quick: bool = False, reps: int = REPS) -> list[Row]:
    if quick:
        return []
    ModelCache().get("tiny", LoadOptions(tiny_root=CACHE_DIR / "tiny"))  # builds the model the X3 probe loads
    return keyframe_snapping(reps) + wait_policy(reps)


if __name__ == "__main__":
    from benchmarks.report import print_rows

    print_rows(run())
