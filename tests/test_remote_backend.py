"""The OpenAI-compatible backend against a real `transformers serve` running the tiny model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import httpx2
import numpy as np
import openai
import pytest
from openai.types.chat import ChatCompletionChunk
from PIL import Image
from transformers import AutoProcessor, AutoTokenizer, GenerationConfig

from app_helpers import LOCALHOST, free_port
from gemma_demo.engine.base import Update, last_update
from gemma_demo.errors import CapabilityError, GenerationError, InvalidInputError, ModelUnavailableError
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.registry import capabilities_for_name
from gemma_demo.engine.remote.client import (
    OpenAIBackend,
    StreamState,
    load_openai_backend,
    request_options,
)
from gemma_demo.engine.remote.encode import to_openai_messages
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.tiny.model import ensure_tiny_model
from gemma_demo.tiny.tokenizer import BYTE_TOKENS, SPECIAL_TOKENS

HOST = LOCALHOST
SERVER_START_DEADLINE_S = 90.0
SERVER_EXIT_WAIT_S = 10.0
STOP_DEADLINE_S = 2.0
NEXT_REQUEST_DEADLINE_S = 10.0
UNREACHABLE_DEADLINE_S = 10.0
SILENT_SERVER_TIMEOUT_S = 0.5
LONG_ANSWER_TOKENS = 100_000  # minutes of work for the tiny model on a CPU
SHORT_ANSWER_TOKENS = 12
GREEDY = GenerationSettings(max_new_tokens=SHORT_ANSWER_TOKENS)

pytestmark = pytest.mark.timeout(120)


@dataclass(frozen=True)
class FakeVideo:
    frames: tuple[np.ndarray, ...]
    timestamps: tuple[float, ...]


def tone() -> np.ndarray:
    return (0.3 * np.sin(np.arange(16_000) / 5)).astype(np.float32)


def user(*parts) -> list[dict]:
    return [{"role": "user", "content": [*parts, {"type": "text", "text": "Describe what you get."}]}]


PROMPTS = {
    "text": lambda: user(),
    "image": lambda: user({"type": "image", "image": Image.new("RGB", (320, 200), "red")}),
    "audio": lambda: user({"type": "audio", "audio": tone()}),
    "video": lambda: user({"type": "video", "video": FakeVideo(
        frames=tuple(np.full((48, 64, 3), 60 * i, np.uint8) for i in range(3)),
        timestamps=(0.0, 61.0, 125.5),
    )}),
}


def keep_answers_decodable(folder: Path) -> None:
    """Random weights pick byte-fallback pieces that form invalid UTF-8, which transformers serve's
    stream decoder rejects mid-answer ("Invalid prefix encountered"). Suppressing them and the
    special tokens (end of turn included) makes every answer plain words exactly as long as asked."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = GenerationConfig.from_pretrained(folder)
    byte_pieces = tokenizer.convert_tokens_to_ids(BYTE_TOKENS)
    config.suppress_tokens = sorted({*tokenizer.added_tokens_decoder, *byte_pieces})
    config.save_pretrained(folder)


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory) -> Path:
    folder = ensure_tiny_model("e2b", tmp_path_factory.mktemp("served-tiny"))
    keep_answers_decodable(folder)
    return folder


@pytest.fixture(scope="session")
def server(model_folder, tmp_path_factory) -> Iterator[str]:
    """`transformers serve` pinned to the tiny model on CPU; yields its base URL."""
    port, log_path = free_port(), tmp_path_factory.mktemp("serve") / "serve.log"
    command = [str(Path(sys.executable).with_name("transformers")), "serve", str(model_folder),
               "--host", HOST, "--port", str(port), "--device", "cpu"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://{HOST}:{port}/v1"
    try:
        wait_until_ready(base_url, process, log_path)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(SERVER_EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_ready(base_url: str, process: subprocess.Popen, log_path: Path) -> None:
    probe = openai.OpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=1.0)
    deadline = time.monotonic() + SERVER_START_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"transformers serve exited early:\n{log_path.read_text()[-3000:]}")
        try:
            probe.models.list()
            return
        except openai.APIConnectionError:
            time.sleep(0.2)
    pytest.fail(f"transformers serve did not answer /v1/models in time:\n{log_path.read_text()[-3000:]}")


@pytest.fixture
def remote(server, model_folder) -> OpenAIBackend:
    return load_openai_backend(str(model_folder), LoadOptions(backend="openai", base_url=server))


@pytest.fixture(scope="session")
def local(model_folder):
    return ModelCache().get("tiny", LoadOptions(tiny_root=model_folder.parent))


def assert_well_formed(updates: list[Update], new_tokens: int) -> None:
    assert len(updates) >= 2
    assert [u.done for u in updates] == [False] * (len(updates) - 1) + [True]
    final = updates[-1]
    assert final.stats.new_tokens == new_tokens
    assert final.stats.prompt_tokens > 0
    # No special token leaks; a plain "<" may be sampled by the random model.
    assert final.answer and not [token for token in SPECIAL_TOKENS if token in final.answer]
    assert 0 < final.stats.time_to_first_token <= final.stats.elapsed


@pytest.mark.parametrize("kind", sorted(PROMPTS))
def test_every_modality_streams_from_the_server(remote, kind):
    updates = list(remote.stream(PROMPTS[kind](), GREEDY))
    assert_well_formed(updates, SHORT_ANSWER_TOKENS)
    if kind != "text":
        text_only = last_update(remote.stream(PROMPTS["text"](), GREEDY)).stats.prompt_tokens
        assert updates[-1].stats.prompt_tokens > text_only + 10, "the media did not reach the prompt"


@pytest.mark.parametrize("kind", ["text", "image", "audio"])
def test_same_prompt_same_answer_same_shape_as_local(remote, local, kind):
    far = last_update(remote.stream(PROMPTS[kind](), GREEDY))
    near = last_update(local.stream(PROMPTS[kind](), GREEDY))
    assert far.stats.prompt_tokens == near.stats.prompt_tokens
    assert far.answer == near.answer
    assert far.reasoning == near.reasoning == ""
    for field in fields(Update):
        assert type(getattr(far, field.name)) is type(getattr(near, field.name))
    for field in ("prompt_tokens", "new_tokens", "time_to_first_token", "elapsed"):
        assert type(getattr(far.stats, field)) is type(getattr(near.stats, field))


def test_thinking_flag_reaches_the_chat_template(remote, model_folder):
    processor = AutoProcessor.from_pretrained(model_folder)
    counts = {}
    for thinking in (False, True):
        rendered = processor.apply_chat_template(PROMPTS["text"](), add_generation_prompt=True,
                                                 tokenize=False, enable_thinking=thinking)
        assert ("<|think|>" in rendered) is thinking
        update = last_update(remote.stream(PROMPTS["text"](), GREEDY.with_changes(thinking=thinking)))
        tokens = processor.tokenizer(rendered, add_special_tokens=False).input_ids
        assert update.stats.prompt_tokens == len(tokens)
        counts[thinking] = update.stats.prompt_tokens
    assert counts[True] > counts[False]


def test_closing_the_stream_stops_the_server(remote):
    updates = remote.stream(PROMPTS["text"](), GREEDY.with_changes(max_new_tokens=LONG_ANSWER_TOKENS))
    assert next(updates).done is False and next(updates).done is False
    started = time.perf_counter()
    updates.close()
    assert time.perf_counter() - started < STOP_DEADLINE_S
    # transformers serve generates one answer at a time: an abandoned long answer would hold this one up.
    impatient = OpenAIBackend(remote.name, remote.client.with_options(timeout=NEXT_REQUEST_DEADLINE_S),
                              remote.capabilities)
    assert last_update(impatient.stream(PROMPTS["text"](), GREEDY)).stats.new_tokens == SHORT_ANSWER_TOKENS


def test_vllm_only_fields_are_dropped_once_the_server_refuses_them(remote):
    sampling = GenerationSettings(max_new_tokens=SHORT_ANSWER_TOKENS, sampling=True, image_budget=70)
    extra = request_options(sampling, 70, vllm_fields=True)["extra_body"]
    assert {"top_k", "mm_processor_kwargs", "skip_special_tokens"} <= set(extra)
    assert remote.send_vllm_fields
    assert_well_formed(list(remote.stream(PROMPTS["image"](), sampling)), SHORT_ANSWER_TOKENS)
    assert not remote.send_vllm_fields


def test_video_is_sent_as_stamped_frames():
    parts = to_openai_messages(PROMPTS["video"]())[0]["content"]
    assert [p["text"] for p in parts if p["type"] == "text"][:3] == ["00:00", "01:01", "02:05"]
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert len(urls) == 3 and all(url.startswith("data:image/jpeg;base64,") for url in urls)


def test_unreachable_server_says_so_quickly():
    backend = load_openai_backend("google/gemma-4-E2B-it",
                                  LoadOptions(backend="openai", base_url=f"http://{HOST}:{free_port()}/v1"))
    started = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="Cannot reach the model server at http://127.0.0.1"):
        last_update(backend.stream(PROMPTS["text"](), GREEDY))
    assert time.perf_counter() - started < UNREACHABLE_DEADLINE_S


def test_silent_server_times_out_instead_of_hanging():
    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen()
        client = openai.OpenAI(base_url=f"http://{HOST}:{silent.getsockname()[1]}/v1", api_key="EMPTY",
                               max_retries=0, timeout=SILENT_SERVER_TIMEOUT_S)
        backend = OpenAIBackend("m", client, capabilities_for_name("m"))
        with pytest.raises(GenerationError, match="sent nothing for too long"):
            last_update(backend.stream(PROMPTS["text"](), GREEDY))


def test_missing_base_url_is_explained():
    with pytest.raises(ModelUnavailableError, match="--base-url"):
        load_openai_backend("google/gemma-4-E4B-it", LoadOptions(backend="openai"))


def test_audio_on_a_model_without_audio_is_refused_before_any_request():
    backend = load_openai_backend("google/gemma-4-31B-it",
                                  LoadOptions(backend="openai", base_url=f"http://{HOST}:{free_port()}/v1"))
    with pytest.raises(CapabilityError, match="no audio input"):
        next(backend.stream(PROMPTS["audio"](), GREEDY))


def test_wrong_model_name_shows_the_servers_reason(server):
    backend = load_openai_backend("E4B", LoadOptions(backend="openai", base_url=server))
    assert backend.name == "google/gemma-4-E4B-it"
    with pytest.raises(InvalidInputError, match="pinned to"):
        last_update(backend.stream(PROMPTS["text"](), GREEDY))


@pytest.mark.parametrize(("status", "failure", "error", "words"), [
    (404, openai.NotFoundError, ModelUnavailableError, "it serves: "),
    (401, openai.AuthenticationError, ModelUnavailableError, "API key"),
    (413, openai.APIStatusError, InvalidInputError, "fewer video frames"),
    (429, openai.RateLimitError, GenerationError, "busy"),
    (503, openai.InternalServerError, GenerationError, "HTTP 503: warming up"),
])
def test_http_failures_are_explained(remote, model_folder, status, failure, error, words):
    response = httpx2.Response(status, request=httpx2.Request("POST", remote.server))
    explained = remote.explain(failure("failed", response=response, body={"message": "warming up"}))
    assert type(explained) is error and words in str(explained)
    if status == 404:
        assert str(model_folder) in str(explained)


def chunk(content: str | None = None, **delta_extra) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate({
        "id": "c", "created": 0, "model": "m", "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": content, **delta_extra}}],
    })


@pytest.mark.parametrize("chunks", [
    [chunk(reasoning_content="weigh it"), chunk("Blue.")],
    [chunk(reasoning="weigh it"), chunk("Blue.")],
    [chunk("<|channel>thought\nweigh"), chunk(" it<channel|>"), chunk("Blue.<turn|>")],
])
def test_reasoning_is_separated_however_the_server_sends_it(chunks):
    state = StreamState(started=time.perf_counter())
    assert all(state.add(c) for c in chunks)
    final = state.update(done=True)
    assert (final.reasoning, final.answer, final.stats.new_tokens) == ("weigh it", "Blue.", len(chunks))
