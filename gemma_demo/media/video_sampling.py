"""Which frames of a video the model sees, decoded in the shape the Gemma 4 processor accepts.

The frames come with a `VideoMetadata` that carries their real times (without it the
processor assumes 24 fps and the `mm:ss` stamps in the prompt are wrong).

Frames are fetched by seeking to the keyframe before each sampled time, so the
cost grows with the number of frames sampled, not with the length of the clip. When
samples lie further apart than the keyframes, a sampled time within a quarter of the
sampling interval of a keyframe takes the keyframe itself (one frame to decode instead
of up to a whole group of pictures); the times reported are always those of the frames
used. Opening and probing the file is `video_file`'s job.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
from av.container import InputContainer
from av.stream import Stream

from gemma_demo.errors import InvalidInputError
from gemma_demo.media.timing import mm_ss
from gemma_demo.media.video_file import (
    QUARTER_TURN,
    SUPPORTED_FORMATS_HINT,
    VideoInfo,
    decoded_frames,
    describe_container,
    open_media,
    stream_origin,
)

if TYPE_CHECKING:
    from transformers.video_utils import VideoMetadata

DEFAULT_NUM_FRAMES = 32
DEFAULT_MAX_SIDE = 1280
VIDEO_BACKEND = "pyav"
FLOOR_TOLERANCE = 1e-9
# A sampled time moves onto a keyframe at most this share of the sampling interval away.
SNAP_SHARE = 0.25


@dataclass(frozen=True)
class FrameSampling:
    """Which frames of a clip the model sees.

    `num_frames` frames are spread over the range; with `fps` set, the range is
    sampled at that rate instead, still capped by `num_frames` so a long clip
    cannot flood the prompt (set `num_frames=None` to lift the cap). `start` and
    `end` are seconds; `end` past the clip's end means "to the end".
    """

    num_frames: int | None = DEFAULT_NUM_FRAMES
    fps: float | None = None
    start: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        if self.num_frames is None and self.fps is None:
            raise InvalidInputError("Choose a number of frames or a frame rate for the video.")
        if self.num_frames is not None and self.num_frames < 1:
            raise InvalidInputError("The number of video frames must be at least 1.")
        if self.fps is not None and not self.fps > 0:
            raise InvalidInputError("The video sampling rate (frames per second) must be above 0.")
        if self.start is not None and self.start < 0:
            raise InvalidInputError("The video start time cannot be negative.")
        if self.end is not None and self.end <= (self.start or 0.0):
            raise InvalidInputError("The video end time must be later than the start time.")

    def frame_count(self, seconds: float) -> int:
        """How many frames this asks for over `seconds` of video, before clamping to what exists."""
        if self.fps is None:
            return self.num_frames
        at_rate = max(1, math.floor(seconds * self.fps + FLOOR_TOLERANCE))
        return at_rate if self.num_frames is None else min(at_rate, self.num_frames)


@dataclass(frozen=True)
class SampledVideo:
    """Sampled frames (H×W×3 uint8 RGB, upright, downscaled) with their real times.

    `timestamps` are the decoded frames' own presentation times in seconds, so
    they stay true for variable frame rates; `width` and `height` describe the
    returned frames.
    """

    frames: tuple[np.ndarray, ...]
    timestamps: tuple[float, ...]
    frame_indices: tuple[int, ...]
    fps: float
    duration: float
    total_frames: int
    width: int
    height: int

    def metadata(self) -> VideoMetadata:
        """Metadata for the processor, whose prompt stamps are `frames_indices[i] / fps`."""
        from transformers.video_utils import VideoMetadata  # lazy: importing transformers takes seconds

        return VideoMetadata(
            total_num_frames=self.total_frames,
            fps=self.fps,
            width=self.width,
            height=self.height,
            duration=self.duration,
            video_backend=VIDEO_BACKEND,
            frames_indices=list(self.frame_indices),
        )

    def stamp_labels(self) -> list[str]:
        """`mm:ss` per frame, computed like the processor's so the UI shows what the model reads."""
        return [mm_ss(t) for t in self.metadata().timestamps]


def sample_video(
    path: str | Path, sampling: FrameSampling = FrameSampling(), max_side: int = DEFAULT_MAX_SIDE
) -> SampledVideo:
    """Decodes the frames `sampling` asks for, at most one per source frame.

    Sample times are frame centres: the range is cut into as many equal slices
    as frames and each slice contributes the frame on screen at its middle. The
    count never exceeds the frames the range holds, and a source frame picked
    twice (possible with variable frame rates) is returned once.
    """
    with open_media(path) as container:
        info = describe_container(container)
        stream = container.streams.video[0]
        frames: dict[int, np.ndarray] = {}
        times = _sample_times(sampling, info)
        step = times[1] - times[0] if len(times) > 1 else info.duration
        cursor = _FrameCursor(container, stream, _snap_tolerance(step, stream))
        for seconds in times:
            frame = cursor.frame_at(seconds)
            if frame is not None and frame.pts not in frames:
                frames[frame.pts] = _to_rgb(frame, info.rotation, max_side)
        if not frames:
            raise InvalidInputError(f"No frames of this video could be decoded. {SUPPORTED_FORMATS_HINT}")
        return _sampled(frames, stream_origin(stream), stream.time_base, info)


def _sample_times(sampling: FrameSampling, info: VideoInfo) -> list[float]:
    start = sampling.start or 0.0
    if start >= info.duration:
        raise InvalidInputError(
            f"The start time {start:g} s is past the end of the video ({info.duration:.1f} s). "
            "Choose an earlier start."
        )
    end = info.duration if sampling.end is None else min(sampling.end, info.duration)
    available = max(1, round((end - start) * info.fps))
    count = min(sampling.frame_count(end - start), available)
    step = (end - start) / count
    return [start + (k + 0.5) * step for k in range(count)]


def _keyframes(stream: Stream) -> list[int]:
    """Keyframe times in stream ticks, from the container's index (empty when it has none)."""
    return sorted(entry.timestamp for entry in stream.index_entries if entry.is_keyframe)


def _snap_tolerance(step: float, stream: Stream) -> int:
    """How far, in stream ticks, a sampled time may move to land on a keyframe.

    A quarter of the sampling interval, so a frame never leaves its slice's middle half;
    and nothing when samples are closer together than the widest keyframe gap, where
    snapping would pull neighbouring samples onto the same few keyframes.
    """
    keys = _keyframes(stream)
    step_ticks = step / stream.time_base
    if len(keys) < 2 or step_ticks < max(b - a for a, b in zip(keys, keys[1:])):
        return 0
    return int(step_ticks * SNAP_SHARE)


class _FrameCursor:
    """Finds the frame on screen at increasing times, seeking only when that skips decoding.

    Decoding forward is kept while no keyframe lies between the decoder's
    position and the next time; otherwise it seeks to the keyframe before it. A time
    within `tolerance` ticks of a keyframe is moved onto it first.
    """

    def __init__(self, container: InputContainer, stream: Stream, tolerance: int = 0) -> None:
        self._container = container
        self._stream = stream
        self._origin = stream_origin(stream)
        self._tolerance = tolerance
        self._keys = _keyframes(stream) if tolerance else []
        self._frames: Iterator[av.VideoFrame] | None = None
        self._shown: av.VideoFrame | None = None
        self._ahead: av.VideoFrame | None = None

    def frame_at(self, seconds: float) -> av.VideoFrame | None:
        """The last frame starting at or before `seconds`, or the first after it if none does."""
        target = self._snapped(self._origin + int(seconds / self._stream.time_base))
        if self._must_seek(target):
            self._container.seek(target, stream=self._stream, backward=True)
            self._frames = decoded_frames(self._container, self._stream)
            self._shown = self._ahead = None
        while True:
            if self._ahead is None:
                self._ahead = next(self._frames, None)
                if self._ahead is None:
                    break
            if self._ahead.pts > target:
                break
            self._shown, self._ahead = self._ahead, None
        return self._shown if self._shown is not None else self._ahead

    def _snapped(self, target: int) -> int:
        """The nearest keyframe when it lies within the tolerance, else `target` unchanged."""
        after = bisect.bisect_left(self._keys, target)
        near = [key for key in self._keys[max(0, after - 1) : after + 1] if abs(key - target) <= self._tolerance]
        return min(near, key=lambda key: abs(key - target)) if near else target

    def _must_seek(self, target: int) -> bool:
        latest = self._ahead if self._ahead is not None else self._shown
        entries = self._stream.index_entries
        if self._frames is None or latest is None or not len(entries):
            return True
        keyframe = entries.search_timestamp(target, backward=True)
        return keyframe >= 0 and entries[keyframe].timestamp > latest.pts


def _to_rgb(frame: av.VideoFrame, rotation: int, max_side: int) -> np.ndarray:
    """Scales while converting, so a 4K frame never exists as a full-size RGB array."""
    scale = min(1.0, max_side / max(frame.width, frame.height))
    width, height = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
    rgb = frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()
    return np.ascontiguousarray(np.rot90(rgb, k=rotation // QUARTER_TURN))


def _sampled(frames: dict[int, np.ndarray], origin: int, time_base: Fraction, info: VideoInfo) -> SampledVideo:
    ordered = sorted(frames)
    timestamps = tuple(float((pts - origin) * time_base) for pts in ordered)
    first = frames[ordered[0]]
    return SampledVideo(
        frames=tuple(frames[pts] for pts in ordered),
        timestamps=timestamps,
        frame_indices=tuple(round(t * info.fps) for t in timestamps),
        fps=info.fps,
        duration=info.duration,
        total_frames=info.total_frames,
        width=first.shape[1],
        height=first.shape[0],
    )
