"""Keyframe snapping in `sample_video`: when it applies, when it must not, and true times.

The clips show their frame index (`video_factory.index_frame`), so each test reads which
source frame it got and checks the reported time and `mm:ss` against that frame.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gemma_demo.media.timing import mm_ss
from gemma_demo.media.video_sampling import FrameSampling, sample_video
from video_factory import read_index, write_video

FPS = 25
GOP = 50  # a keyframe every 2 s
FRAMES = 20 * FPS  # 20 s


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("snap") / "gop50.mp4", FRAMES, fps=FPS, gop=GOP)


def shown(path: Path, frames: int) -> list[int]:
    sampled = sample_video(path, FrameSampling(num_frames=frames))
    indices = [read_index(frame) for frame in sampled.frames]
    # The times and stamps reported are those of the frames used, snapped or not.
    assert list(sampled.timestamps) == pytest.approx([index / FPS for index in indices])
    assert sampled.stamp_labels() == [mm_ss(index / FPS) for index in indices]
    return indices


def test_a_keyframe_within_a_quarter_of_the_interval_is_taken(clip):
    # 4 samples: every 5 s, centres 2.5, 7.5, 12.5, 17.5 s; keyframes 0.5 s away (tolerance 1.25 s).
    indices = shown(clip, 4)
    assert indices == [2 * FPS, 8 * FPS, 12 * FPS, 18 * FPS]


def test_a_keyframe_further_than_a_quarter_of_the_interval_is_not(clip):
    # 10 samples: every 2 s, centres 1, 3, ..., 19 s; keyframes 1 s away (tolerance 0.5 s).
    indices = shown(clip, 10)
    assert indices == [FPS + 2 * FPS * k for k in range(10)]


def test_samples_closer_than_the_keyframes_are_never_snapped(tmp_path):
    # Keyframes every 10 s, 8 samples over 24 s (every 3 s): the quarter-interval rule alone
    # would move the 10.5 s and 19.5 s samples onto the keyframes at 10 s and 20 s.
    sparse = write_video(tmp_path / "gop250.mp4", 24 * FPS, fps=FPS, gop=10 * FPS)
    indices = shown(sparse, 8)
    assert indices == [int((k + 0.5) * 3 * FPS) for k in range(8)]
