"""Questions about a video clip: sampled frames, optionally with the clip's sound.

The model never sees the file, only the frames the sampler picked and their times,
so every result carries those frames as a gallery: a person can check what the
answer was based on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gemma_demo.engine.base import Backend, Message
from gemma_demo.errors import InvalidInputError
from gemma_demo.media.timing import MAX_CLIP_SECONDS, SAMPLE_RATE, mm_ss
from gemma_demo.media.video_file import extract_audio_track
from gemma_demo.media.video_sampling import FrameSampling, SampledVideo, sample_video
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.tasks.result import StreamedResult
from gemma_demo.tasks.messages import require_audio

DEFAULT_SETTINGS = GenerationSettings(sampling=True)  # the model card's temperature, top_p and top_k
DEFAULT_SAMPLING = FrameSampling()
# The vision encoder encodes all frames in one batch, 9 patches per soft token, so its
# activations grow with frames x soft tokens per frame. 32 frames at 1120 (35,840) or 64 at
# 1120 (71,680, about 645,000 patches) exhaust the memory of the GPUs this app targets;
# 64 frames at 280 (17,920) do not. Requests past this are refused before anything runs.
MAX_VIDEO_SOFT_TOKENS = 32_768
NO_AUDIO_TRACK_NOTE = "This video has no audio track, so the model only saw the frames."

Frame = tuple[np.ndarray, str]


@dataclass(frozen=True)
class VideoResult(StreamedResult):
    """`gallery` pairs each frame the model saw with the `mm:ss` stamp it read beside it."""

    gallery: tuple[Frame, ...]
    timestamps: tuple[float, ...]
    audio_seconds: float = 0.0
    note: str = ""

    def to_json(self) -> dict:
        return {
            "answer": self.text,
            "reasoning": self.update.reasoning,
            "frames": [
                {"time": time, "label": label}
                for time, (_, label) in zip(self.timestamps, self.gallery)
            ],
            "audio_seconds": self.audio_seconds,
            "note": self.note,
            "stats": self.update.stats.to_json(),
            "done": self.done,
        }


@dataclass(frozen=True)
class _Sound:
    samples: np.ndarray | None
    note: str = ""


def describe_video(
    backend: Backend,
    path: str | Path,
    prompt: str,
    sampling: FrameSampling = DEFAULT_SAMPLING,
    include_audio: bool = False,
    settings: GenerationSettings = DEFAULT_SETTINGS,
) -> Iterator[VideoResult]:
    """Stream an answer about the sampled frames and, when asked, the first 30 s of their sound."""
    if include_audio:
        require_audio(backend)
    if not prompt.strip():
        raise InvalidInputError("Type a question or an instruction about the video.")
    video = sample_video(path, sampling)
    check_vision_load(len(video.frames), settings.video_frame_budget)
    sound = _sound(path, sampling, video) if include_audio else _Sound(None)
    gallery = tuple(zip(video.frames, video.stamp_labels()))
    audio_seconds = 0.0 if sound.samples is None else len(sound.samples) / SAMPLE_RATE
    for update in backend.stream(video_messages(video, sound.samples, prompt.strip()), settings):
        yield VideoResult(update, gallery, video.timestamps, audio_seconds, sound.note)


def check_vision_load(frames: int, budget: int) -> None:
    """Refuse a video whose frames would exhaust memory in the vision encoder, with the numbers."""
    if frames * budget > MAX_VIDEO_SOFT_TOKENS:
        raise InvalidInputError(
            f"{frames} frames at {budget} soft tokens each make {frames * budget:,} soft tokens, more than the "
            f"vision encoder can take at once ({MAX_VIDEO_SOFT_TOKENS:,}). Use at most "
            f"{MAX_VIDEO_SOFT_TOKENS // budget} frames at this budget, or a lower frame budget."
        )


def video_messages(video: SampledVideo, audio: np.ndarray | None, prompt: str) -> list[Message]:
    """Media before the text, as the Gemma 4 model card advises: frames, then sound."""
    sound = [] if audio is None else [{"type": "audio", "audio": audio}]
    return [
        {
            "role": "user",
            "content": [{"type": "video", "video": video}, *sound, {"type": "text", "text": prompt}],
        }
    ]


def _sound(path: str | Path, sampling: FrameSampling, video: SampledVideo) -> _Sound:
    """The sound of the selected range, cut to the 30 s the model hears at once."""
    start = sampling.start or 0.0
    end = video.duration if sampling.end is None else min(sampling.end, video.duration)
    samples = extract_audio_track(path, start=start, max_seconds=min(MAX_CLIP_SECONDS, end - start))
    if samples is None:
        return _Sound(None, NO_AUDIO_TRACK_NOTE)
    if end - start > MAX_CLIP_SECONDS:
        return _Sound(
            samples,
            f"The model heard only the first {MAX_CLIP_SECONDS:g} s of sound "
            f"({mm_ss(start)}–{mm_ss(start + MAX_CLIP_SECONDS)}); the frames cover the whole range.",
        )
    return _Sound(samples)

