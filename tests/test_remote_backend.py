"""The OpenAI-compatible backend against a real `transformers serve` running the tiny model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
from gemma_demo.engine.remote.encode import VideoForm, to_openai_messages, video_io_kwargs
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.media.images import load_image
from gemma_demo.media.timing import mm_ss
from gemma_demo.tasks.chat import chat, user_message
from gemma_demo.tiny.model import ensure_tiny_model
from gemma_demo.tiny.tokenizer import BYTE_TOKENS, SPECIAL_TOKENS

HOST = LOCALHOST
SERVER_START_DEADLINE_S = 90.0
SERVER_EXIT_WAIT_S = 10.0
STOP_CEILING_S = 60.0
NEXT_REQUEST_DEADLINE_S = 60.0
SILENT_SERVER_TIMEOUT_S = 0.5
LONG_ANSWER_TOKENS = 100_000  # minutes of work for the tiny model on a CPU
SHORT_ANSWER_TOKENS = 12
GREEDY = GenerationSettings(max_new_tokens=SHORT_ANSWER_TOKENS)
PICTURE = Path(__file__).resolve().parent.parent / "input" / "coffee.jpg"

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
    assert far.reasoning == near.reasoning  # both empty here: see the thinking server below
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


def test_a_two_turn_chat_about_a_picture_reaches_the_server_whole(remote, local):
    settings = GenerationSettings(max_new_tokens=8, sampling=False)
    first = list(chat(remote, [], user_message("What is in this picture?", [PICTURE]), settings))[-1]
    follow_up = user_message("And what colour is the cup?")
    second = list(chat(remote, first.history, follow_up, settings))[-1]
    first_answer = first.update.answer
    said = [(m["role"], m["content"] if isinstance(m["content"], str) else m["content"][-1]["text"])
            for m in second.history]
    assert first_answer and said == [("user", "What is in this picture?"), ("assistant", first_answer),
                                     ("user", "And what colour is the cup?"), ("assistant", second.update.answer)]
    # Built here by hand, not by the chat task: what the server must have read for the second turn.
    whole = [
        {"role": "user", "content": [{"type": "image", "image": load_image(PICTURE)},
                                     {"type": "text", "text": "What is in this picture?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": first_answer}]},
        {"role": "user", "content": [{"type": "text", "text": "And what colour is the cup?"}]},
    ]
    assert second.update.stats.prompt_tokens == local.count_prompt(whole, settings).tokens
    assert first.update.stats.prompt_tokens == local.count_prompt(whole[:1], settings).tokens
    assert second.update.stats.prompt_tokens > first.update.stats.prompt_tokens + first.update.stats.new_tokens


def test_closing_the_stream_stops_the_server(remote):
    updates = remote.stream(PROMPTS["text"](), GREEDY.with_changes(max_new_tokens=LONG_ANSWER_TOKENS))
    assert next(updates).done is False and next(updates).done is False
    closing = threading.Thread(target=updates.close)
    closing.start()
    closing.join(STOP_CEILING_S)  # a ceiling against hanging until the answer ends, not a speed target
    assert not closing.is_alive(), "closing the stream waited for the server's answer"
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


def test_video_goes_to_vllm_as_one_item_that_vllm_stamps_the_same():
    video = PROMPTS["video"]()[0]["content"][0]["video"]
    (part, _) = to_openai_messages(PROMPTS["video"](), VideoForm.JPEG_LIST)[0]["content"]
    url = part["video_url"]["url"]
    assert url.startswith("data:video/jpeg;base64,") and url.count(",") == 3
    io_kwargs = video_io_kwargs(video)["video"]
    stamps = [mm_ss(index / io_kwargs["fps"]) for index in io_kwargs["frames_indices"]]  # as vLLM writes them
    assert stamps == ["00:00", "01:01", "02:05"] and io_kwargs["num_frames"] == -1


def test_unreachable_server_says_so_quickly():
    backend = load_openai_backend("google/gemma-4-E2B-it",
                                  LoadOptions(backend="openai", base_url=f"http://{HOST}:{free_port()}/v1"))
    with pytest.raises(ModelUnavailableError, match="Cannot reach the model server at http://127.0.0.1"):
        last_update(backend.stream(PROMPTS["text"](), GREEDY))


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


# vLLM 0.32's own words (tests/test_vllm_backend.py meets the first two for real).
VLLM_REFUSALS = {
    "over-length": ("This model's maximum context length is 4096 tokens. However, your prompt contains at least "
                    "4097 input tokens, which exceeds this limit even without any output tokens. Please reduce "
                    "the length of the input prompt. (parameter=input_tokens, value=4097)"),
    "too-many-new-tokens": ("max_tokens=5000 cannot be greater than max_model_len=4096. Please request fewer "
                            "output tokens. (parameter=max_tokens, value=5000)"),
    "no-audio-tower": ("Audio input was provided but the model '<path>' does not have an audio tower. Audio "
                       "inference is only supported for Gemma4 models that include an audio_config (i.e., "
                       "models that include an audio_config)."),
    "too-many-images": "At most 2 image(s) may be provided in one prompt. (parameter=image)",
    "too-many-frames": ("The decoder prompt contains a(n) video item with 2520 embedding tokens, which exceeds "
                        "the pre-allocated encoder cache size 2496. Please reduce the input size or increase "
                        "the encoder cache size by setting --limit-mm-per-prompt at startup."),
}


@pytest.mark.parametrize(("refusal", "error", "words"), [
    ("over-length", InvalidInputError, "(4097 tokens) does not fit the server's context of 4096 tokens"),
    ("too-many-new-tokens", InvalidInputError, "5000 new tokens do not fit"),
    ("no-audio-tower", CapabilityError, "has no audio input"),
    ("too-many-images", InvalidInputError, "at most 2 image item(s)"),
    ("too-many-frames", InvalidInputError, "Choose fewer frames"),
])
def test_vllms_refusals_say_what_to_change(refusal, error, words):
    backend = OpenAIBackend("m", openai.OpenAI(base_url=f"http://{HOST}:9/v1", api_key="EMPTY"),
                            capabilities_for_name("m"))
    response = httpx2.Response(400, request=httpx2.Request("POST", backend.server))
    body = {"message": VLLM_REFUSALS[refusal], "type": "BadRequestError", "param": None, "code": 400}
    explained = backend.explain(openai.BadRequestError("refused", response=response, body=body))
    assert type(explained) is error and words in str(explained)


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


# A server that thinks: the tiny model behind `transformers serve` never writes a thought (its
# special tokens are suppressed above), so this small OpenAI-compatible endpoint streams one the
# way vLLM's `--reasoning-parser gemma4` does: the thought in `reasoning_content`, then the answer.
THOUGHT = ["The ball is", " red and round,", " so it is a ball."]
ANSWER = ["A red ", "ball."]


class ThinkingServer(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def do_POST(self):  # noqa: N802 - the stdlib's name
        import json

        self.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        deltas = [{"role": "assistant", "content": ""}]
        deltas += [{"reasoning_content": piece, "content": None} for piece in THOUGHT]
        deltas += [{"content": piece} for piece in ANSWER]
        for number, delta in enumerate(deltas):
            finish = "stop" if number == len(deltas) - 1 else None
            body = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            self.wfile.write(f"data: {json.dumps(body)}\n\n".encode())
            self.wfile.flush()
        usage = {"prompt_tokens": 21, "completion_tokens": len(THOUGHT) + len(ANSWER), "total_tokens": 26}
        tail = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [], "usage": usage}
        self.wfile.write(f"data: {json.dumps(tail)}\n\ndata: [DONE]\n\n".encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def thinking_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer((HOST, 0), ThinkingServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://{HOST}:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_a_servers_thought_arrives_as_reasoning_not_as_the_answer(thinking_server):
    backend = load_openai_backend("E2B", LoadOptions(backend="openai", base_url=thinking_server))
    updates = list(backend.stream(PROMPTS["text"](), GREEDY.with_changes(thinking=True)))
    final = updates[-1]
    assert (final.reasoning, final.answer) == ("".join(THOUGHT), "".join(ANSWER))
    assert (final.stats.prompt_tokens, final.stats.new_tokens) == (21, 5)
    # Streamed in order: the thought grows first while the answer is still empty.
    assert [u.reasoning for u in updates[:3]] == ["".join(THOUGHT[: n + 1]) for n in range(3)]
    assert all(u.answer == "" for u in updates[:3])
    assert ThinkingServer.requests[-1]["model"] == "google/gemma-4-E2B-it"
