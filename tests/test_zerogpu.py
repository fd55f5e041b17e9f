"""ZeroGPU: the model loads once at start-up on cuda, only generation runs in `spaces.GPU`,
each call asks for a duration that grows with its work, and answers still stream.

The real `spaces.GPU` is a pass-through outside a ZeroGPU Space (its `_GPU` returns the task
when `SPACES_ZERO_GPU` is unset), so a fake stands in for it: it records the duration each
call asks for and, like ZeroGPU's generator wrapper, yields what the task yields.
"""

import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import spaces
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app_helpers import free_port
from audio_factory import write_audio, write_silent_video
from pdf_factory import text_pdf
from gemma_demo.config import AppConfig
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.engine.tool_syntax import write_call
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


def test_chat_durations_grow_with_every_model_call_and_everything_it_reads(tmp_path):
    settings = GenerationSettings(max_new_tokens=256)
    chat, resend = zerogpu.duration_for("chat"), zerogpu.duration_for("chat_resend")
    picture = str(shutil.copy(INPUT / "scene.jpg", tmp_path / "scene.jpg"))
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(text_pdf([f"Page {n}" for n in range(1, 11)]))
    clip = write_audio(tmp_path / "clip.wav", np.zeros(RATE * 20, dtype=np.float32), RATE)
    talk = write_audio(tmp_path / "talk.wav", np.zeros(RATE * 200, dtype=np.float32), RATE)
    video = write_silent_video(tmp_path / "clip.mp4", 2.0)
    owned = frozenset(os.path.realpath(path) for path in (picture, pdf, clip, talk, video))
    item = zerogpu.SECONDS_PER_MEDIA_ITEM

    def message(*paths):
        return {"text": "What is this?", "files": [str(path) for path in paths]}

    def sent(*paths):  # an earlier turn, as the history holds it
        return [{"role": "user", "content": [{"type": "file", "file": {"path": str(path)}} for path in paths]},
                {"role": "assistant", "content": [{"type": "text", "text": "An answer."}]}]

    plain = chat("tiny", settings, message(), [], owned)
    assert chat("tiny", settings, message(picture), [], owned) == plain + item
    assert chat("tiny", settings, message(picture), sent(picture), owned) == plain + 2 * item  # read again each turn
    stranger = str(shutil.copy(INPUT / "scene.jpg", tmp_path / "stranger.jpg"))
    assert chat("tiny", settings, message(picture), sent(stranger), owned) == plain + item  # not this session's file
    pages = chat("tiny", settings, message(pdf), [], owned)
    assert pages == plain + 10 * item and chat("tiny", settings, message(pdf), [], owned, "text", "1-3") == plain + 3 * item
    assert chat("tiny", settings, message(talk), [], owned) - chat("tiny", settings, message(clip), [], owned) == 6 * item
    assert chat("tiny", settings, message(), sent(video), owned) == plain + zerogpu.CHAT_VIDEO_FRAMES * item
    # The set-aside message of a retry or an edit costs what the same message sent anew does.
    assert resend("tiny", settings, sent(picture)[0], sent(pdf), owned) == chat("tiny", settings, message(picture), sent(pdf), owned)

    def agent(tools, steps, json_answer=False, paths=()):
        return chat("tiny", settings, message(*paths), [], owned, "images", "", True, tools, steps, json_answer)

    call = zerogpu.SETUP_SECONDS + 256 / zerogpu.TOKENS_PER_SECOND  # one model call, reading nothing
    assert agent(["calculate"], 3) == math.ceil(3 * call)  # a model call a round, a tool that runs no model
    assert agent(["calculate"], 3, json_answer=True) == math.ceil(4 * call)  # the JSON answer after tools
    reading = agent(["read_text"], 3)
    assert reading == math.ceil(3 * call + 2 * (call + item))  # two calls between the three rounds
    assert agent(["calculate", "read_text"], 3) == reading  # the costliest tool offered
    assert agent(["transcribe"], 2, paths=(talk,)) > agent(["transcribe"], 2, paths=(clip,))  # its 30 s pieces
    assert agent(["describe_video"], 2) > agent(["read_text"], 2)  # its frames
    long = GenerationSettings(max_new_tokens=4000)
    assert chat("tiny", long, message(), [], owned, "images", "", True, ["transcribe"], 20) == zerogpu.MAX_CHAT_SECONDS


def test_a_chat_turn_asks_for_its_own_duration_through_the_gpu_wrapper(zero_gpu):
    from scripted_backend import serve_scripted
    from agent_helpers import QueuedBackend

    backend = QueuedBackend().enqueue(write_call("calculate", {"expression": "1+1"}), "It is 2.")
    demo = serve_scripted(backend)
    try:
        Client(demo.local_url, verbose=False).predict(
            {"text": "Add.", "files": []}, [], agent=True, tools=["calculate"], max_steps=3, max_new_tokens=64,
            api_name="/chat")
    finally:
        demo.close()
    expected = zerogpu.chat_seconds(GenerationSettings(max_new_tokens=64), zerogpu.ChatMedia(), True, ["calculate"], 3)
    assert zero_gpu == [expected] and expected > zerogpu.generation_seconds(GenerationSettings(max_new_tokens=64))


def test_the_chat_tabs_model_bound_steps_are_named_for_their_durations():
    from gemma_demo.engine.cache import ModelCache as Cache
    from gemma_demo.engine.options import LoadOptions
    from gemma_demo.ui.layout import build_demo

    names = []

    def gpu(run, name):
        names.append(name)
        return run

    build_demo(AppConfig(model="tiny", load=LoadOptions()), Cache(), gpu=gpu)
    assert {"chat", "chat_resend"} <= set(names) and zerogpu.duration_for("chat_resend") is zerogpu.duration_for("chat")


def test_outside_a_zero_gpu_space_nothing_is_wrapped(monkeypatch):
    monkeypatch.delenv(zerogpu.ZERO_GPU_VARIABLE, raising=False)
    assert not zerogpu.on_zero_gpu()
    assert zerogpu.on_zero_gpu({zerogpu.ZERO_GPU_VARIABLE: "true"})
