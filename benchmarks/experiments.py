"""The experiments behind the fixes for missed targets, and the ceilings they are judged by.

Nothing here changes the app: an experiment swaps one piece in for the duration of a
measurement (by monkeypatching) and measures it side by side with the code as it is, so
the report can say what a fix buys, or would buy, before anyone writes it. Not part of
`--quick`.

`python -m benchmarks.experiments` runs them; `python -m benchmarks.run_all` includes them.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch

from benchmarks.common import CACHE_DIR, ROOT_INPUT, Row, paired, seconds, spread, timed
from benchmarks.engine_speed import GREEDY, _ForcedLength
from benchmarks.video_prep import LONG_SECONDS, NUM_FRAMES, clip
from gemma_demo.engine.options import LoadOptions
from gemma_demo.media import video
from gemma_demo.media.images import load_image
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.tasks.messages import image_messages

REPS = 7
USERS = 4
BATCH_TOKENS = 64


@contextmanager
def patched(owner, name: str, value) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


def batching_gain(backend, reps: int) -> list[Row]:
    """X1 (for P5): tokens/s of 4 concurrent engine streams, and of one batched `generate` called directly."""
    settings = GenerationSettings(max_new_tokens=BATCH_TOKENS)
    picture = load_image(str(ROOT_INPUT / "scene.jpg"))
    chat = image_messages(picture, "Describe everything in this picture in detail.")
    forced = dataclasses.replace(backend, model=_ForcedLength(backend.model))
    pool = ThreadPoolExecutor(USERS)
    text = backend.processor.apply_chat_template(chat, tokenize=False, add_generation_prompt=True,
                                                 enable_thinking=False)
    batch = backend.processor(text=[text] * USERS, images=[[picture]] * USERS, return_tensors="pt",
                              images_kwargs={"max_soft_tokens": settings.image_budget})
    stream_all = lambda _: [u for u in forced.stream(chat, settings)][-1]

    def batched() -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            out = backend.model.generate(**batch, max_new_tokens=BATCH_TOKENS, min_new_tokens=BATCH_TOKENS, **GREEDY)
        assert out.shape[0] == USERS
        return (time.perf_counter() - started) / USERS

    threads = paired(timed(lambda: list(pool.map(stream_all, range(USERS)))),
                     timed(lambda: stream_all(0)), reps)
    together = paired(lambda: batched(), timed(lambda: stream_all(0)), reps)
    pool.shutdown()
    return [Row("X1", f"P5 in-process, tiny: {USERS} concurrent streams, aggregate tokens/s vs 1 stream",
                f"{1 / threads.ratio * USERS:.2f}×", note=f"the engine batches them; {spread(threads)}"),
            Row("X1", f"P5 in-process, tiny: {USERS} identical requests in one batched generate vs 1 stream",
                f"{1 / together.ratio:.2f}×", note=f"the ceiling: no streaming, no scheduler; {spread(together)}")]


class SnappingCursor(video._FrameCursor):
    """The proposed sampler step: take the keyframe itself when it lies within the sample's slice."""

    tolerance_s = 0.0

    def frame_at(self, seconds_at: float):
        target = self._origin + int(seconds_at / self._stream.time_base)
        entries = self._stream.index_entries
        key = entries.search_timestamp(target, backward=True) if len(entries) else -1
        if key >= 0 and self._must_seek(target):
            keyframe = entries[key].timestamp
            if float((target - keyframe) * self._stream.time_base) <= self.tolerance_s:
                self._container.seek(keyframe, stream=self._stream, backward=True)
                self._frames = video._decoded_frames(self._container, self._stream)
                self._shown, self._ahead = next(self._frames, None), None
                return self._shown
        return super().frame_at(seconds_at)


def keyframe_snapping(reps: int) -> list[Row]:
    """X2 (for P3): the 10-minute clip sampled with keyframe snapping against as it is."""
    long = clip(LONG_SECONDS)
    sampling = video.FrameSampling(num_frames=NUM_FRAMES)
    SnappingCursor.tolerance_s = LONG_SECONDS / NUM_FRAMES / 2

    def snapping() -> float:
        with patched(video, "_FrameCursor", SnappingCursor):
            return timed(lambda: video.sample_video(long, sampling))()

    result = paired(timed(lambda: video.sample_video(long, sampling)), snapping, reps)
    return [Row("X2", "P3 10-min clip, 32 frames: sampling as is vs with keyframe snapping (media/video.py)",
                seconds(result.a_median), seconds(result.b_median), result.ratio,
                note=f"ratio = speed-up; multiply P3's transformers ratio by it; {spread(result)}")]


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
    backend = ModelCache().get("tiny", LoadOptions(tiny_root=CACHE_DIR / "tiny"))
    rows = batching_gain(backend, reps) + keyframe_snapping(reps)
    return rows + wait_policy(reps)


if __name__ == "__main__":
    from benchmarks.report import print_rows

    print_rows(run())
