"""Reading a video file with PyAV: opening it with errors a person can act on, what its
container says (`probe_video`), decoding its packets, and its sound track.

transformers would decode video paths with torchcodec, which does not work here, so the app
decodes with PyAV. Which frames the model sees, and their times, is `video_sampling`'s job.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from av.container import InputContainer
from av.stream import Stream

from gemma_demo.errors import InvalidInputError
from gemma_demo.media.timing import MAX_CLIP_SECONDS, SAMPLE_RATE

ROTATE_TAG = "rotate"
QUARTER_TURN = 90
FULL_TURN = 360
SUPPORTED_FORMATS_HINT = "Re-export it as MP4 (H.264) or WebM and upload it again."


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a clip; width and height are as displayed (after rotation).

    `rotation` is the counter-clockwise turn (0, 90, 180 or 270 degrees) that
    makes stored frames upright, as phones record portrait video sideways.
    `fps` is the average rate, so for variable-frame-rate clips `total_frames`
    may be an estimate.
    """

    duration: float
    fps: float
    total_frames: int
    width: int
    height: int
    rotation: int
    has_audio: bool


def probe_video(path: str | Path) -> VideoInfo:
    """Reads the clip's properties; decodes one frame to prove the video is playable."""
    with open_media(path) as container:
        return describe_container(container)


def extract_audio_track(
    path: str | Path, start: float = 0.0, max_seconds: float = MAX_CLIP_SECONDS
) -> np.ndarray | None:
    """The clip's sound from `start` as 16 kHz mono float32, or None when it has no audio track.

    Only the requested window is decoded, so a short excerpt of a long film is cheap.
    """
    if start < 0 or not max_seconds > 0:
        raise InvalidInputError("The audio start must be 0 or later and its length above 0 seconds.")
    with open_media(path) as container:
        if not container.streams.audio:
            return None
        samples = _decode_audio(container, container.streams.audio[0], start, max_seconds)
    if samples.size == 0:
        raise InvalidInputError(f"The video has no sound after {start:g} s. Choose an earlier start time.")
    return samples


@contextmanager
def open_media(path: str | Path) -> Iterator[InputContainer]:
    """Opens a container, turning every FFmpeg failure into an error a person can act on."""
    file = Path(path)
    if not file.is_file():
        raise InvalidInputError(f"The video file '{file.name}' was not found. Upload it again.")
    if file.stat().st_size == 0:
        raise InvalidInputError(f"The video file '{file.name}' is empty (0 bytes). Upload it again.")
    try:
        with av.open(str(file), metadata_errors="ignore") as container:
            yield container
    except av.FFmpegError as error:
        raise InvalidInputError(
            f"'{file.name}' could not be read as a video; it may be damaged, cut short or not a video "
            f"at all. {SUPPORTED_FORMATS_HINT}"
        ) from error


def describe_container(container: InputContainer) -> VideoInfo:
    """What the container says about its first video track; decodes one frame to prove it plays."""
    if not container.streams.video:
        raise InvalidInputError(
            "This file has no video track. If it is a sound recording, upload it as audio instead."
        )
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    first = next(decoded_frames(container, stream), None)
    if first is None:
        raise InvalidInputError(f"The video track holds no frames that can be decoded. {SUPPORTED_FORMATS_HINT}")
    fps = _frame_rate(stream)
    duration = _duration(container, stream, fps)
    rotation = _rotation(stream, first)
    sideways = rotation % (2 * QUARTER_TURN) != 0
    return VideoInfo(
        duration=duration,
        fps=fps,
        total_frames=stream.frames or max(1, round(duration * fps)),
        width=first.height if sideways else first.width,
        height=first.width if sideways else first.height,
        rotation=rotation,
        has_audio=bool(container.streams.audio),
    )


def _frame_rate(stream: Stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise InvalidInputError(f"The video's frame rate is unknown. {SUPPORTED_FORMATS_HINT}")
    return float(rate)


def _duration(container: InputContainer, stream: Stream, fps: float) -> float:
    """Prefers the stream's own length; containers such as WebM only record the overall one."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    if stream.frames:
        return stream.frames / fps
    raise InvalidInputError(f"The video's length is unknown. {SUPPORTED_FORMATS_HINT}")


def _rotation(stream: Stream, first: av.VideoFrame) -> int:
    """Reads the display matrix (counter-clockwise) or else an old `rotate` tag (clockwise)."""
    degrees = first.rotation or -_rotate_tag(stream)
    return round(degrees / QUARTER_TURN) * QUARTER_TURN % FULL_TURN


def _rotate_tag(stream: Stream) -> float:
    tag = next((value for key, value in stream.metadata.items() if key.lower() == ROTATE_TAG), "0")
    try:
        return float(tag)
    except ValueError:
        return 0.0


def decoded_frames(container: InputContainer, stream: Stream) -> Iterator[av.Frame]:
    """Decodes `stream` from the current position, skipping packets the decoder rejects.

    One damaged packet should cost one frame, not the whole clip; frames without
    a timestamp cannot be placed in time and are dropped.
    """
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            continue
        yield from (frame for frame in frames if frame.pts is not None)


def stream_origin(stream: Stream) -> int:
    return stream.start_time or 0


def _decode_audio(container: InputContainer, stream: Stream, start: float, max_seconds: float) -> np.ndarray:
    """Resamples from the packet holding `start` and trims to the exact window."""
    origin = stream_origin(stream)
    container.seek(origin + int(start / stream.time_base), stream=stream, backward=True)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    wanted = round(max_seconds * SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    head: int | None = None
    collected = 0
    for frame in decoded_frames(container, stream):
        if head is None:
            head = max(0, round((start - float((frame.pts - origin) * stream.time_base)) * SAMPLE_RATE))
        resampled = [out.to_ndarray()[0] for out in resampler.resample(frame)]
        chunks += resampled
        collected += sum(len(chunk) for chunk in resampled)
        if collected >= head + wanted:
            break
    chunks += [out.to_ndarray()[0] for out in resampler.resample(None)]
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return samples[head or 0:][:wanted].astype(np.float32, copy=False)
