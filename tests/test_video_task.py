"""Video questions end to end on the tiny model, with and without the clip's sound."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gemma_demo.engine.base import Backend, Message, Update, audio_unsupported_message
from gemma_demo.errors import CapabilityError, InvalidInputError
from gemma_demo.media.timing import MAX_CLIP_SECONDS, SAMPLE_RATE
from gemma_demo.media.video_sampling import FrameSampling, SampledVideo
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.registry import ModelCapabilities
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.tasks.video_question import NO_AUDIO_TRACK_NOTE, describe_video
from video_factory import read_index, write_video

FPS = 1
CLIP_FRAMES = 40
SHORT_FRAMES = 12
TINY_SETTINGS = GenerationSettings(max_new_tokens=4)
PROMPT = "What happens in this video?"


@dataclass
class Recording:
    """Passes requests to a real backend and keeps the messages it was sent."""

    inner: Backend
    requests: list[list[Message]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def capabilities(self) -> ModelCapabilities:
        return self.inner.capabilities

    def stream(self, messages: list[Message], settings: GenerationSettings) -> Iterator[Update]:
        self.requests.append(messages)
        return self.inner.stream(messages, settings)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    return {
        "sound": write_video(folder / "sound.mp4", CLIP_FRAMES, fps=FPS, with_audio=True),
        "mute": write_video(folder / "mute.mp4", SHORT_FRAMES, fps=FPS),
    }


@pytest.fixture(scope="module")
def tiny_moe(tiny_options):
    return ModelCache().get("tiny-moe", tiny_options)


def parts(recording: Recording) -> list[dict]:
    [[message]] = recording.requests
    return message["content"]


def clock(seconds: float) -> str:
    return f"{int(seconds) // 60:02d}:{int(seconds) % 60:02d}"


def run(backend: Backend, path: Path, **kwargs) -> list:
    results = list(describe_video(backend, path, PROMPT, settings=TINY_SETTINGS, **kwargs))
    assert len(results) >= 2 and results[-1].done and not results[0].done
    return results


def test_frames_and_sound_reach_the_model_and_the_gallery_shows_what_it_saw(tiny_backend, clips):
    recording = Recording(tiny_backend)
    final = run(recording, clips["sound"], sampling=FrameSampling(num_frames=4), include_audio=True)[-1]

    video, audio, text = parts(recording)
    assert [video["type"], audio["type"], text["type"]] == ["video", "audio", "text"]
    assert isinstance(video["video"], SampledVideo) and text["text"] == PROMPT
    assert len(audio["audio"]) == round(MAX_CLIP_SECONDS * SAMPLE_RATE)
    assert "first 30 s" in final.note and final.audio_seconds == MAX_CLIP_SECONDS

    shown = [read_index(frame) for frame, _ in final.gallery]
    assert len(shown) == 4 and None not in shown and shown == sorted(shown)
    assert all(frame is sent for (frame, _), sent in zip(final.gallery, video["video"].frames))
    assert [label for _, label in final.gallery] == [clock(index / FPS) for index in shown]
    assert final.timestamps == pytest.approx([index / FPS for index in shown])

    data = json.loads(json.dumps(final.to_json()))
    assert [frame["label"] for frame in data["frames"]] == [label for _, label in final.gallery]
    assert data["answer"] == final.text and data["stats"]["new_tokens"] <= TINY_SETTINGS.max_new_tokens


def test_a_range_sends_only_its_own_frames_and_sound(tiny_backend, clips):
    recording = Recording(tiny_backend)
    sampling = FrameSampling(num_frames=3, start=10.0, end=20.0)
    final = run(recording, clips["sound"], sampling=sampling, include_audio=True)[-1]
    assert final.note == "" and final.audio_seconds == pytest.approx(10.0)
    assert len(parts(recording)[1]["audio"]) == 10 * SAMPLE_RATE
    assert all(10 <= read_index(frame) / FPS < 20 for frame, _ in final.gallery)


def test_without_audio_only_frames_are_sent(tiny_backend, clips):
    recording = Recording(tiny_backend)
    final = run(recording, clips["sound"], sampling=FrameSampling(num_frames=2))[-1]
    assert [part["type"] for part in parts(recording)] == ["video", "text"]
    assert final.audio_seconds == 0 and final.note == ""


def test_never_more_frames_than_the_clip_holds(tiny_backend, clips):
    final = run(tiny_backend, clips["mute"], sampling=FrameSampling(num_frames=100))[-1]
    assert len(final.gallery) == SHORT_FRAMES
    assert [read_index(frame) for frame, _ in final.gallery] == list(range(SHORT_FRAMES))


def test_a_clip_without_sound_runs_on_its_frames_with_a_note(tiny_backend, clips):
    recording = Recording(tiny_backend)
    final = run(recording, clips["mute"], sampling=FrameSampling(num_frames=3), include_audio=True)[-1]
    assert final.note == NO_AUDIO_TRACK_NOTE
    assert [part["type"] for part in parts(recording)] == ["video", "text"]


def test_a_model_without_audio_refuses_sound_before_decoding_but_runs_on_frames(tiny_moe, clips, tmp_path):
    with pytest.raises(CapabilityError) as refused:
        list(describe_video(tiny_moe, tmp_path / "missing.mp4", PROMPT, include_audio=True))
    assert str(refused.value) == audio_unsupported_message(tiny_moe.name)

    final = run(tiny_moe, clips["sound"], sampling=FrameSampling(num_frames=2))[-1]
    assert len(final.gallery) == 2 and final.note == ""


def test_an_empty_prompt_is_refused_without_calling_the_model(tiny_backend, clips):
    recording = Recording(tiny_backend)
    with pytest.raises(InvalidInputError, match="question"):
        list(describe_video(recording, clips["sound"], "  "))
    assert recording.requests == []
