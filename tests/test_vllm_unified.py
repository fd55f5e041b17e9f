"""`tiny-unified` (the 12B's encoder-free architecture) served by a stock vLLM, used by the app.

vLLM reads what transformers does not: `vision_config.num_soft_tokens` (its default image
budget; without it the server does not start) and head sizes its CPU attention supports.
The server gets only the flags a user passes for Gemma 4 on a CPU (`vllm_server.SERVER_FLAGS`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from audio_factory import sine, write_audio
from gemma_demo.engine.base import last_update
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.remote.client import OpenAIBackend, load_openai_backend
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.tasks.audio_question import ask_audio
from gemma_demo.tasks.caption import caption
from gemma_demo.tiny.model import ensure_tiny_model
from vllm_server import VllmStartError, serve_vllm

pytestmark = pytest.mark.timeout(1200)  # a fresh machine builds the venv first (3–4 min)

SHORT = GenerationSettings(max_new_tokens=4)


@pytest.fixture(scope="module")
def remote(tiny_root, tmp_path_factory, vllm_python) -> OpenAIBackend:
    folder: Path = ensure_tiny_model("unified", tiny_root)
    try:
        with serve_vllm(folder, tmp_path_factory.mktemp("vllm-unified"), python=vllm_python) as server:
            yield load_openai_backend(str(folder), LoadOptions(backend="openai", base_url=server.base_url))
    except VllmStartError as error:
        pytest.fail(str(error))


def text_only_prompt_tokens(backend: OpenAIBackend, question: str) -> int:
    return last_update(backend.stream([{"role": "user", "content": question}], SHORT)).stats.prompt_tokens


def test_a_picture_reaches_the_model_as_soft_tokens(remote):
    *_, last = caption(remote, Image.new("RGB", (640, 480), "teal"), settings=SHORT)
    assert last.done
    assert last.update.stats.prompt_tokens > text_only_prompt_tokens(remote, "Describe.") + 100


def test_audio_reaches_the_model_as_frames(remote, tmp_path):
    path = write_audio(tmp_path / "tone.wav", sine(440.0, 2.0), 16_000)
    *_, last = ask_audio(remote, path, "What do you hear?", settings=SHORT)
    assert last.done
    # 2 s of audio is 50 frames of 40 ms
    assert last.update.stats.prompt_tokens > text_only_prompt_tokens(remote, "What do you hear?") + 40
