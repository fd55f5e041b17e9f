"""Each task's default decoding, checked where it matters: the arguments that reach `generate`.

Open-ended tasks (caption, chat, HTML page, audio and video questions) sample with the
model card's values (`tests/data/reference/gemma4/gemma-4-E2B-E4B-it.generation_config.json`);
extraction tasks (detection, pointing, OCR, transcription, translation) decode greedily.
Every task runs on the tiny model with its defaults laid under an untouched settings panel,
as the page and the API send them; only the token cap is lowered, to keep the runs short.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks.reference_configs import REFERENCE_DIR
from gemma_demo.cli.main import build_parser, settings_from
from gemma_demo.errors import InvalidInputError
from gemma_demo.engine.settings import DEFAULT_TEMPERATURE, DEFAULT_TOP_K, DEFAULT_TOP_P, GenerationSettings
from gemma_demo.media.video_sampling import FrameSampling
from gemma_demo.tasks import audio_question, caption, chat, detection, html_page, ocr, transcription, video_question
from gemma_demo.ui.settings import SettingsChoice, settings_for

INPUT = Path(__file__).resolve().parents[1] / "input"
PUBLISHED = json.loads((REFERENCE_DIR / "gemma-4-E2B-E4B-it.generation_config.json").read_text(encoding="utf-8"))
MODEL_CARD = {name: PUBLISHED[name] for name in ("do_sample", "temperature", "top_p", "top_k")}
GREEDY = {"do_sample": False}
TOKENS = 2

Run = Callable[[object, GenerationSettings], object]
TASKS: dict[str, tuple[GenerationSettings, Run]] = {
    "caption": (caption.DEFAULT_SETTINGS, lambda b, s: caption.caption(b, INPUT / "scene.jpg", settings=s)),
    "html": (html_page.DEFAULT_SETTINGS, lambda b, s: html_page.image_to_html(b, INPUT / "sketch.png", settings=s)),
    "audio question": (audio_question.DEFAULT_SETTINGS,
                       lambda b, s: audio_question.ask_audio(b, str(INPUT / "speech.wav"), "Who speaks?", s)),
    "video question": (video_question.DEFAULT_SETTINGS,
                       lambda b, s: video_question.describe_video(b, INPUT / "clip.mp4", "What moves?",
                                                                  FrameSampling(num_frames=2), settings=s)),
    "chat": (chat.DEFAULT_SETTINGS, lambda b, s: chat.chat(b, [], chat.user_message("Hello."), s)),
    "detection": (detection.DEFAULT_SETTINGS, lambda b, s: detection.detect(b, INPUT / "shapes.jpg", "circle", s)),
    "pointing": (detection.DEFAULT_SETTINGS,
                 lambda b, s: detection.detect(b, INPUT / "shapes.jpg", "circle", s, detection.GroundingMode.POINTS)),
    "ocr": (ocr.DEFAULT_SETTINGS, lambda b, s: ocr.ocr(b, INPUT / "document.png", settings=s)),
    "transcription": (transcription.DEFAULT_SETTINGS,
                      lambda b, s: transcription.transcribe(b, str(INPUT / "speech.wav"), settings=s)),
    "translation": (transcription.DEFAULT_SETTINGS,
                    lambda b, s: transcription.translate(b, str(INPUT / "speech.wav"), "English", "French", s)),
}
OPEN_ENDED = ("caption", "html", "audio question", "video question", "chat")
EXTRACTION = ("detection", "pointing", "ocr", "transcription", "translation")


@pytest.fixture
def generate_calls(tiny_backend, monkeypatch) -> list[dict]:
    """The keyword arguments of every `generate` call the tiny model gets during the test."""
    calls: list[dict] = []
    real = tiny_backend.model.generate

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(tiny_backend.model, "generate", recording)
    return calls


def decoding_of(task: str, sampling: str, backend, calls: list[dict]) -> list[dict]:
    """Run `task` as the panel would with `sampling` chosen; the decoding arguments of each `generate` call."""
    defaults, run = TASKS[task]
    list(run(backend, settings_for(SettingsChoice(model="tiny", max_new_tokens=TOKENS, sampling=sampling), defaults)))
    keys = ("do_sample", "temperature", "top_p", "top_k")
    return [{key: call[key] for key in keys if call.get(key) is not None} for call in calls]


def test_the_sampling_defaults_are_the_model_cards():
    assert {"do_sample": True, "temperature": DEFAULT_TEMPERATURE, "top_p": DEFAULT_TOP_P, "top_k": DEFAULT_TOP_K} == MODEL_CARD


@pytest.mark.parametrize("task", OPEN_ENDED)
def test_open_ended_tasks_sample_with_the_model_card_values(task, tiny_backend, generate_calls):
    decoding = decoding_of(task, "default", tiny_backend, generate_calls)
    assert decoding and decoding == [MODEL_CARD] * len(decoding)


@pytest.mark.parametrize("task", EXTRACTION)
def test_extraction_tasks_decode_greedily(task, tiny_backend, generate_calls):
    decoding = decoding_of(task, "default", tiny_backend, generate_calls)
    assert decoding and decoding == [GREEDY] * len(decoding)


def test_sampling_off_makes_an_open_ended_task_greedy(tiny_backend, generate_calls):
    assert decoding_of("caption", "off", tiny_backend, generate_calls) == [GREEDY]


def test_sampling_on_makes_an_extraction_task_sample(tiny_backend, generate_calls):
    assert decoding_of("ocr", "on", tiny_backend, generate_calls) == [MODEL_CARD]


@pytest.mark.parametrize(("flags", "defaults", "expected"), [
    ([], caption.DEFAULT_SETTINGS, (True, DEFAULT_TEMPERATURE)),
    (["--no-sampling"], caption.DEFAULT_SETTINGS, (False, DEFAULT_TEMPERATURE)),
    ([], ocr.DEFAULT_SETTINGS, (False, DEFAULT_TEMPERATURE)),
    (["--sampling"], ocr.DEFAULT_SETTINGS, (True, DEFAULT_TEMPERATURE)),
    (["--temperature", "0.5"], ocr.DEFAULT_SETTINGS, (True, 0.5)),
    (["--temperature", "0.5", "--no-sampling"], caption.DEFAULT_SETTINGS, (False, 0.5)),
])
def test_the_cli_keeps_the_tasks_choice_unless_told(flags, defaults, expected):
    settings = settings_from(build_parser().parse_args(["caption", "photo.jpg", *flags]), defaults)
    assert (settings.sampling, settings.temperature) == expected


def test_a_sampling_value_other_than_default_on_off_is_refused():
    with pytest.raises(InvalidInputError, match="Sampling must be 'default', 'on' or 'off'"):
        settings_for(SettingsChoice(model="tiny", sampling=True), caption.DEFAULT_SETTINGS)  # the old boolean
