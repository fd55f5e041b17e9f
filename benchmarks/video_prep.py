"""P3: preparing a video prompt costs the same for a 10-minute clip as for a 10-second one.

The app seeks to the keyframe before each of the 32 sampled times, so its cost should
follow the number of frames sampled, not the clip's length; transformers' own PyAV
loader decodes every frame up to the last one sampled, so it grows with the clip.

`python -m benchmarks.video_prep [--quick]` runs this group alone.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import av
import numpy as np
from transformers.video_utils import load_video

from benchmarks.common import CACHE_DIR, Row, Target, paired, seconds, spread, timed
from gemma_demo.engine.local import build_inputs
from gemma_demo.media.video_sampling import FrameSampling, sample_video
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.tiny.model import build_processor

WIDTH, HEIGHT, FPS = 1280, 720, 25
KEYFRAME_EVERY = 2 * FPS
DISTINCT_FRAMES = 50
NUM_FRAMES = 32
SHORT_SECONDS = 10
LONG_SECONDS = 600  # also in --quick: on a 5-minute clip even a perfect sampler could not be 10× faster
X264 = {"preset": "ultrafast", "crf": "32",
        "x264-params": f"keyint={KEYFRAME_EVERY}:min-keyint={KEYFRAME_EVERY}:scenecut=0"}
LENGTH_TARGET, TRANSFORMERS_TARGET = Target(2.0), Target(10.0, at_most=False)
SQUARE = 160


def _pictures() -> list[av.VideoFrame]:
    """A few distinct 720p pictures (a square crossing a gradient), converted once, reused."""
    ramp = np.linspace(0, 255, WIDTH, dtype=np.uint8)
    background = np.repeat(np.repeat(ramp[None, :, None], HEIGHT, axis=0), 3, axis=2)
    pictures = []
    for k in range(DISTINCT_FRAMES):
        rgb = background.copy()
        x = k * (WIDTH - SQUARE) // DISTINCT_FRAMES
        rgb[HEIGHT // 3:HEIGHT // 3 + SQUARE, x:x + SQUARE] = (230, 40, 40)
        pictures.append(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p"))
    return pictures


def clip(seconds_long: int) -> Path:
    """A 720p25 H.264 clip with a keyframe every 2 s, written once to the cache folder."""
    path = CACHE_DIR / "video" / f"{seconds_long}s-{HEIGHT}p{FPS}-gop{KEYFRAME_EVERY}.mp4"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.mp4")
    pictures = _pictures()
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.options = X264
        for index in range(seconds_long * FPS):
            frame = pictures[index % DISTINCT_FRAMES]
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    partial.rename(path)
    return path


def prepare(path: Path, processor, settings: GenerationSettings):
    """What the video task does before the model runs: sample the frames, build the inputs."""
    video = sample_video(path, FrameSampling(num_frames=NUM_FRAMES))
    message = {"role": "user", "content": [{"type": "video", "video": video},
                                           {"type": "text", "text": "What happens in this video?"}]}
    return build_inputs(processor, [message], settings)


def run(quick: bool = False, reps: int = 5) -> list[Row]:
    started = time.perf_counter()
    short, long = clip(SHORT_SECONDS), clip(LONG_SECONDS)
    encoded = time.perf_counter() - started
    processor, settings = build_processor(), GenerationSettings()
    length = paired(timed(lambda: prepare(long, processor, settings)),
                    timed(lambda: prepare(short, processor, settings)), reps)
    theirs = paired(timed(lambda: load_video(str(long), backend="pyav", num_frames=NUM_FRAMES)),
                    timed(lambda: sample_video(long, FrameSampling(num_frames=NUM_FRAMES))), reps,
                    warmup=0 if quick else 1)  # the clip is in the page cache already; a pair costs ~10 s
    minutes = f"{LONG_SECONDS // 60}-min"
    clips = f"720p25 H.264, keyframe every 2 s{f'; clips encoded in {seconds(encoded)}' if encoded > 1 else ''}"
    return [
        Row("P3", f"video prep (sample 32 frames + processor): {minutes} vs {SHORT_SECONDS}-s clip",
            seconds(length.a_median), seconds(length.b_median), length.ratio, LENGTH_TARGET,
            f"{spread(length)}; {clips}"),
        Row("P3", f"decode + sample 32 frames of the {minutes} clip: transformers load_video(pyav) vs ours",
            seconds(theirs.a_median), seconds(theirs.b_median), theirs.ratio, TRANSFORMERS_TARGET,
            f"{spread(theirs)}; ratio = how many times faster ours is"),
    ]


if __name__ == "__main__":
    from benchmarks.report import print_rows

    print_rows(run(quick="--quick" in sys.argv))
