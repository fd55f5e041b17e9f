"""ZeroGPU: the model loads once at start-up on cuda, only generation runs in `spaces.GPU`,
each call asks for a duration that grows with its work, and answers still stream.

The real `spaces.GPU` is a pass-through outside a ZeroGPU Space (its `_GPU` returns the task
when `SPACES_ZERO_GPU` is unset), so a fake stands in for it: it records the duration each
call asks for and, like ZeroGPU's generator wrapper, yields what the task yields.
"""

from pathlib import Path

import numpy as np
import pytest
import spaces
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app_helpers import free_port
from audio_factory import write_audio
from gemma_demo.config import AppConfig
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.ui import zerogpu
from gemma_demo.ui.server import launch

INPUT = Path(__file__).resolve().parents[1] / "input"
RATE = 16_000


@pytest.fixture()
def zero_gpu(monkeypatch):
    """A ZeroGPU Space as the app sees it; returns the durations GPU calls ask for."""
    asked = []

    def fake_gpu(task, duration):
        def call(*args):
            asked.append(duration(*args))
            yield from task(*args)
        return call

    monkeypatch.setenv(zerogpu.ZERO_GPU_VARIABLE, "true")
    monkeypatch.setattr(spaces, "GPU", fake_gpu)
    return asked


def test_the_model_loads_once_at_start_up_and_answers_stream_through_the_gpu_wrapper(
    zero_gpu, tiny_options, tiny_backend
):
    loads = []

    def loader(name, options):
        loads.append((name, options.device))
        return tiny_backend  # the tiny model on the CPU stands in for the one ZeroGPU holds

    demo = launch(AppConfig(model="tiny", load=tiny_options, port=free_port(), models=("tiny-moe",)),
                  ModelCache(loaders={"local": loader}), prevent_thread_lock=True, quiet=True, share=False)
    try:
        assert loads == [("tiny", "cuda")]  # before any request, outside any GPU call
        client = Client(demo.local_url, verbose=False)
        for _ in range(2):
            job = client.submit(handle_file(INPUT / "scene.jpg"), "short", api_name="/caption", max_new_tokens=24)
            partials = list(job)
            assert len(partials) >= 2 and job.result()[0]  # streamed, then finished
        assert loads == [("tiny", "cuda")] and len(zero_gpu) == 2
        with pytest.raises(AppError, match="it serves tiny"):  # one model per Space
            client.submit(handle_file(INPUT / "scene.jpg"), "short", api_name="/caption", model="tiny-moe").result()
    finally:
        demo.close()


def test_durations_grow_with_the_work(tmp_path):
    short, long = GenerationSettings(max_new_tokens=256), GenerationSettings(max_new_tokens=4000)
    caption = zerogpu.duration_for("caption")
    assert caption("tiny", short, "a.jpg") < caption("tiny", long, "a.jpg")

    transcribe = zerogpu.duration_for("transcribe")
    clip = write_audio(tmp_path / "clip.wav", np.zeros(RATE * 20, dtype=np.float32), RATE)
    talk = write_audio(tmp_path / "talk.wav", np.zeros(RATE * 200, dtype=np.float32), RATE)
    assert zerogpu.audio_pieces(clip) == 1 and zerogpu.audio_pieces(talk) == 7
    assert transcribe("tiny", short, str(clip), "English") < transcribe("tiny", short, str(talk), "English")

    video = zerogpu.duration_for("video")
    assert video("tiny", short, "v.mp4", "What?", 8) < video("tiny", short, "v.mp4", "What?", 64)
    assert caption("tiny", long, "a.jpg") > zerogpu.SETUP_SECONDS + 4000 / zerogpu.TOKENS_PER_SECOND - 1


def test_outside_a_zero_gpu_space_nothing_is_wrapped(monkeypatch):
    monkeypatch.delenv(zerogpu.ZERO_GPU_VARIABLE, raising=False)
    assert not zerogpu.on_zero_gpu()
    assert zerogpu.on_zero_gpu({zerogpu.ZERO_GPU_VARIABLE: "true"})
