"""The 12B's encoder-free architecture through every endpoint: the app started with `--model tiny-unified`.

`tiny-unified` is built with `Gemma4UnifiedForConditionalGeneration` and `Gemma4UnifiedProcessor`
(pictures as raw 48-pixel patches, audio as raw 40 ms frames), so these tests run the
path the real `google/gemma-4-12B-it` takes, offline and in seconds.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from transformers import AutoModelForMultimodalLM, AutoProcessor

from app_helpers import free_port
from audio_factory import beeps_with_pauses, write_audio
from gemma_demo.config import parse_app_args
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.registry import capabilities_for_name, find_known
from gemma_demo.tiny.model import ensure_tiny_model

INPUT = Path(__file__).resolve().parent.parent / "input"
TINY_TOKENS = 6
LONG_CLIP_BEEPS = (20.0, 20.0, 20.0, 9.0)  # with 2 s pauses: 77 s, more than two 30 s pieces


@pytest.fixture(scope="module")
def unified_client(tiny_options):
    from gemma_demo.ui.server import launch

    args = ["--model", "tiny-unified", "--port", str(free_port())]
    config = replace(parse_app_args(args, env={}), load=tiny_options)
    demo = launch(config, ModelCache(), prevent_thread_lock=True, quiet=True, share=False)
    yield Client(demo.local_url, verbose=False)
    demo.close()


def final(client: Client, *args, api_name: str, **kwargs) -> tuple:
    # Greedy, so every answer makes all its tokens (a sampled end token could stop an open-ended task early).
    return client.submit(*args, api_name=api_name, max_new_tokens=TINY_TOKENS, sampling="off", **kwargs).result()


def test_the_12b_is_known_with_audio_and_its_long_context():
    spec = find_known("12B")
    assert spec.repo_id == "google/gemma-4-12B-it"
    assert spec.capabilities.audio and spec.capabilities.context_tokens == 262_144
    assert capabilities_for_name("tiny-unified") == spec.capabilities


def test_tiny_unified_loads_through_the_auto_classes_like_the_12b(tiny_root):
    folder = ensure_tiny_model("unified", tiny_root)
    model = AutoModelForMultimodalLM.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
    assert type(model).__name__ == "Gemma4UnifiedForConditionalGeneration"
    assert type(processor).__name__ == "Gemma4UnifiedProcessor"
    text = model.config.text_config
    assert text.use_bidirectional_attention == "vision" and "store" in text.kv_sharing_modes
    assert model.config.audio_config.audio_samples_per_token == 640


@pytest.mark.parametrize(
    ("api_name", "args"),
    [
        ("/caption", (handle_file(INPUT / "scene.jpg"), "short")),
        ("/detect", (handle_file(INPUT / "shapes.jpg"), "circle")),
        ("/point", (handle_file(INPUT / "shapes.jpg"), "circle")),
        ("/ocr", (handle_file(INPUT / "document.png"), "text")),
        ("/html", (handle_file(INPUT / "sketch.png"),)),
        ("/translate", (handle_file(INPUT / "speech.wav"), "English", "French")),
        ("/ask_audio", (handle_file(INPUT / "speech.wav"), "Who speaks?")),
    ],
)
def test_every_image_and_audio_endpoint_answers(unified_client, api_name, args):
    outputs = final(unified_client, *args, api_name=api_name)
    assert f"{TINY_TOKENS} new tokens" in outputs[-1]


def test_video_with_its_sound_track_answers(unified_client):
    gallery, _, _, stats = final(
        unified_client, handle_file(INPUT / "clip.mp4"), "What moves?", num_frames=3, include_audio=True,
        api_name="/video",
    )
    assert len(gallery) == 3 and f"{TINY_TOKENS} new tokens" in stats


def test_transcribing_75_seconds_runs_every_piece(unified_client, tmp_path):
    clip = beeps_with_pauses(LONG_CLIP_BEEPS, pause_seconds=2.0)
    assert len(clip.samples) / clip.rate > 75
    path = write_audio(tmp_path / "long.wav", clip.samples, clip.rate)
    _, srt, files, _, stats = final(unified_client, handle_file(path), "English", api_name="/transcribe")
    pieces = re.match(r"Chunk (\d+) of (\d+)", stats)
    assert pieces and pieces[1] == pieces[2] and int(pieces[2]) >= 3
    assert sorted(Path(file).suffix for file in files) == [".srt", ".txt", ".vtt"]
