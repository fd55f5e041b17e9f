"""Faults through the public API: each gives a clear message and the app serves the next request.

A model that fails part-way through an answer, an out-of-memory error while generating,
a crash in the processor, a missing or corrupt model folder, and the model server of
the openai backend killed in the middle of a streamed answer.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from gemma_demo.config import AppConfig
from gemma_demo.cli.main import EXIT_FAILED_INPUT, main
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.cache import ModelCache
from gemma_demo.ui.server import launch
from gemma_demo.tiny.model import ensure_tiny_model
from gemma_demo.ui.endpoints import GENERIC_ERROR
from app_helpers import free_port, generating, wait_until
from test_api import INPUT
from test_remote_backend import HOST, SERVER_EXIT_WAIT_S, keep_answers_decodable, wait_until_ready

TOKENS = 8
LONG_ANSWER = 3000
TOKENS_BEFORE_FAILURE = 3
STREAMED_BEFORE_KILL = 3
RECOVERY_DEADLINE_S = 30.0

pytestmark = pytest.mark.timeout(180)


def serve(cache: ModelCache, model: str, load: LoadOptions):
    config = AppConfig(model=model, load=load, port=free_port(), models=("tiny",))
    return launch(config, cache, prevent_thread_lock=True, quiet=True, share=False)


def caption(client: Client, max_new_tokens: int = TOKENS, model: str | None = None):
    extra = {} if model is None else {"model": model}
    return client.submit(handle_file(INPUT / "scene.jpg"), "short", "", api_name="/caption",
                         max_new_tokens=max_new_tokens, image_budget=70, sampling="off", **extra)  # greedy: all tokens


def finished(job) -> bool:
    final = job.result()
    return bool(final[0]) and f"{TOKENS} new tokens" in final[-1]


# A model that fails part-way, out of memory, a crash before generation


@pytest.fixture(scope="module")
def local(tiny_options):
    cache = ModelCache()
    backend = cache.get("tiny", tiny_options)  # the very backend the app will use
    demo = serve(cache, "tiny", tiny_options)
    yield Client(demo.local_url, verbose=False), backend
    demo.close()


def fails_after_some_tokens(error: BaseException):
    """A `generate` that streams a few real tokens, then fails like a crashing model."""

    def generate(**kwargs):
        streamer = kwargs["streamer"]
        streamer.put(kwargs["input_ids"])  # the prompt, as generate does first
        for token in kwargs["input_ids"][0, -TOKENS_BEFORE_FAILURE:]:
            streamer.put(token.reshape(1))
            time.sleep(0.05)
        raise error

    return generate


@pytest.mark.parametrize(("error", "message"), [
    (RuntimeError("CUDA error: an illegal memory access was encountered"),
     r"Generation failed: RuntimeError: CUDA error: an illegal memory access"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
     r"ran out of memory while generating\. Lower the image budget"),
], ids=["crash-mid-answer", "out-of-memory-mid-answer"])
def test_a_model_failing_mid_answer_gives_a_clear_message(local, monkeypatch, error, message):
    client, backend = local
    monkeypatch.setattr(backend.model, "generate", fails_after_some_tokens(error))
    job = caption(client)
    with pytest.raises(AppError, match=message):
        job.result()
    assert job.outputs(), "the failure came before any token streamed"
    assert wait_until(lambda: not generating())
    monkeypatch.undo()
    assert finished(caption(client))


def test_a_crash_before_generation_gives_the_generic_message_and_a_log(local, monkeypatch, caplog):
    client, backend = local
    monkeypatch.setattr(backend.processor, "apply_chat_template", lambda *a, **k: 1 / 0)
    with pytest.raises(AppError) as failure:
        caption(client).result()
    assert str(failure.value) == GENERIC_ERROR
    assert "ZeroDivisionError" in caplog.text
    monkeypatch.undo()
    assert finished(caption(client))


# A missing or corrupt model folder


@pytest.fixture()
def model_folder(tmp_path) -> Path:
    return tmp_path / "my-gemma"


def install_tiny(folder: Path, tiny_options: LoadOptions) -> None:
    shutil.copytree(ensure_tiny_model("e2b", tiny_options.tiny_root), folder, dirs_exist_ok=True)


def corrupt(folder: Path, tiny_options: LoadOptions) -> None:
    install_tiny(folder, tiny_options)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])


@pytest.mark.parametrize(("damage", "message"), [
    (lambda folder, options: None, r"Could not load .*my-gemma\. There is no such folder: check the path"),
    (corrupt, r"Could not load .*my-gemma\. The folder exists but does not hold a loadable Gemma 4"),
], ids=["missing-folder", "truncated-weights"])
def test_a_broken_model_folder_is_explained_and_the_app_recovers(tiny_options, model_folder, damage, message):
    damage(model_folder, tiny_options)
    demo = serve(ModelCache(), str(model_folder), tiny_options)
    try:
        client = Client(demo.local_url, verbose=False)
        with pytest.raises(AppError, match=message):
            caption(client).result()
        assert finished(caption(client, model="tiny"))  # another model still works meanwhile
        install_tiny(model_folder, tiny_options)
        assert finished(caption(client))  # and the start-up model, once its folder is whole
    finally:
        demo.close()


@pytest.mark.parametrize("damage", [lambda folder, options: None, corrupt], ids=["missing-folder", "truncated-weights"])
def test_the_cli_exits_non_zero_on_a_broken_model_folder(tiny_options, model_folder, damage, capsys):
    damage(model_folder, tiny_options)
    code = main(["caption", str(INPUT / "scene.jpg"), "--model", str(model_folder), "--max-new-tokens", "2"])
    captured = capsys.readouterr()
    assert code == EXIT_FAILED_INPUT
    assert f"Could not load {model_folder}" in captured.out and "error:" in captured.err


# The model server killed in the middle of an answer


@pytest.fixture(scope="module")
def served_folder(tmp_path_factory) -> Path:
    folder = ensure_tiny_model("e2b", tmp_path_factory.mktemp("killed-server"))
    keep_answers_decodable(folder)
    return folder


class ModelServer:
    """`transformers serve` on a fixed port, so it can be killed and started again at the same address."""

    def __init__(self, folder: Path, log: Path):
        self.folder, self.log, self.port = folder, log, free_port()
        self.url = f"http://{HOST}:{self.port}/v1"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [str(Path(sys.executable).with_name("transformers")), "serve", str(self.folder),
                   "--host", HOST, "--port", str(self.port), "--device", "cpu"]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "CUDA_VISIBLE_DEVICES": ""}
        with self.log.open("a") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_until_ready(self.url, self.process, self.log)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(SERVER_EXIT_WAIT_S)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(SERVER_EXIT_WAIT_S)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture()
def model_server(served_folder, tmp_path) -> Iterator[ModelServer]:
    server = ModelServer(served_folder, tmp_path / "serve.log")
    server.start()
    yield server
    server.stop()


def test_the_model_server_killed_mid_answer_is_explained_and_the_app_recovers(model_server, served_folder):
    options = LoadOptions(backend="openai", base_url=model_server.url)
    demo = serve(ModelCache(), str(served_folder), options)
    try:
        client = Client(demo.local_url, verbose=False)
        assert finished(caption(client))
        job = caption(client, LONG_ANSWER)
        assert wait_until(lambda: len(job.outputs()) > STREAMED_BEFORE_KILL, RECOVERY_DEADLINE_S)
        model_server.kill()
        with pytest.raises(AppError, match=r"connection to the model server at .* broke during the answer"):
            job.result()
        with pytest.raises(AppError, match=r"Cannot reach the model server at .* is it running\?"):
            caption(client).result()
        model_server.start()
        assert finished(caption(client))
    finally:
        demo.close()
