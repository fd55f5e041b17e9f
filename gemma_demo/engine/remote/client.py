"""Run Gemma 4 on an OpenAI-compatible server (vLLM, transformers serve, …) instead of here.

Tasks hand over the same messages as to the local engine, with decoded media (PIL images,
16 kHz float arrays, sampled video frames); `encode` turns them into the content parts
every such server reads.

vLLM takes a per-request image budget (`mm_processor_kwargs`, with the server's
`--trust-request-mm-kwargs`), `top_k`, `skip_special_tokens` (keeping the `<|channel>`
markers, so thinking stays separable even without `--reasoning-parser gemma4`, which sends
it in the delta's `reasoning` field instead) and a video as one item of sampled frames
(`media_io_kwargs`, see `encode`). transformers serve refuses unknown fields with HTTP 422.
Such a refusal is safe to answer by sending the request again without them (nothing was
generated), and the backend then stops sending them to that server. vLLM's own refusals
(prompt too long, no audio tower, too many images) are told by `refusals`, llama-server's
by `llama_cpp`, which also says how it reads pictures and videos differently.

The client may retry connecting (the server restarting, a load balancer between replicas)
but never a stream that has started: that would repeat work and text. Closing the update
generator closes the HTTP response, and both servers abort a generation whose client left.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import openai
from openai.types.chat import ChatCompletionChunk

from gemma_demo.engine.base import Message, Stats, Update, check_capabilities, with_system_prompt
from gemma_demo.errors import GemmaDemoError, GenerationError, InvalidInputError, ModelUnavailableError
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.reasoning import split_reasoning
from gemma_demo.engine.remote.encode import (
    VideoForm,
    content_parts,
    to_openai_messages,
    video_io_kwargs,
    videos_in,
)
from gemma_demo.engine.remote.llama_cpp import BUDGET_NOTE, is_llama_cpp
from gemma_demo.engine.remote.refusals import explain_refusal
from gemma_demo.engine.registry import ModelCapabilities, capabilities_for_name, find_known
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.engine.tool_syntax import ToolCall

log = logging.getLogger(__name__)

API_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_API_KEY = "EMPTY"  # what vLLM and transformers serve expect when no key is configured
MAX_RETRIES = 2
CONNECT_TIMEOUT_S = 10.0
# A long prefill (many frames on a large model) sends nothing for a while; this bounds silence.
READ_TIMEOUT_S = 300.0
MODEL_LIST_TIMEOUT_S = 5.0
MAX_LISTED_MODELS = 10
VLLM_ONLY_FIELDS = ("mm_processor_kwargs", "top_k", "skip_special_tokens", "media_io_kwargs")
BAD_REQUEST_STATUSES = (400, 422)
AUTH_STATUSES = (401, 403)
HTTP_NOT_FOUND = 404
HTTP_TOO_LARGE = 413
HTTP_BUSY = 429
HTTP_SERVER_ERROR = 500
# llama-server answers some refusals (a picture to a server without --mmproj) with HTTP 500.
REFUSAL_STATUSES = (*BAD_REQUEST_STATUSES, HTTP_SERVER_ERROR)


def load_openai_backend(name: str, options: LoadOptions) -> OpenAIBackend:
    """A backend for `name` on the server at `options.base_url`; nothing is sent until a request."""
    if not options.base_url:
        raise ModelUnavailableError(
            "The openai backend needs the address of a running model server. Pass --base-url "
            "http://HOST:8000/v1 or set GEMMA_DEMO_BASE_URL (the README shows how to start vLLM)."
        )
    api_key = options.api_key or os.environ.get(API_KEY_ENV) or DEFAULT_API_KEY
    client = openai.OpenAI(
        base_url=options.base_url,
        api_key=api_key,
        max_retries=MAX_RETRIES,
        timeout=openai.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
    )
    return OpenAIBackend(name=served_name(name), client=client, capabilities=capabilities_for_name(name))


def served_name(name: str) -> str:
    """Servers know checkpoints by repo id, so a label such as `E4B` is sent as its repo id."""
    spec = find_known(name)
    return spec.repo_id if spec is not None else name


@dataclass
class OpenAIBackend:
    """One model on one server; safe to share, the client pools its connections."""

    name: str
    client: openai.OpenAI
    capabilities: ModelCapabilities
    send_vllm_fields: bool = True
    llama_cpp: bool | None = None  # asked on the first request with pictures or a video (`llama_cpp`)

    @property
    def server(self) -> str:
        return str(self.client.base_url).rstrip("/")

    def stream(self, messages: list[Message], settings: GenerationSettings) -> Iterator[Update]:
        check_capabilities(messages, self.capabilities, self.name)
        messages = with_system_prompt(messages, settings)
        llama_cpp = self._on_llama_cpp(messages, settings)
        state = StreamState(started=time.perf_counter(), status=BUDGET_NOTE if llama_cpp else "")
        response = self._open(messages, settings, llama_cpp)
        try:
            for chunk in self._chunks(response):
                if state.add(chunk):
                    yield state.update(done=False)
            yield state.update(done=True)
        finally:
            response.close()

    def _on_llama_cpp(self, messages: list[Message], settings: GenerationSettings) -> bool:
        """True for a request with pictures or a video to llama-server, which reads them its own way."""
        if visual_budget(messages, settings) is None:
            return False
        if self.llama_cpp is None:
            self.llama_cpp = is_llama_cpp(self.client)
        return bool(self.llama_cpp)

    def _open(self, messages: list[Message], settings: GenerationSettings,
              llama_cpp: bool) -> openai.Stream[ChatCompletionChunk]:
        try:
            return self._create(messages, settings, llama_cpp)
        except openai.APIStatusError as error:
            if not (self.send_vllm_fields and refuses_vllm_fields(error)):
                raise self.explain(error) from error
        except openai.APIError as error:
            raise self.explain(error) from error
        log.warning("%s refuses vLLM's fields %s; sending without them", self.server, VLLM_ONLY_FIELDS)
        self.send_vllm_fields = False
        return self._open(messages, settings, llama_cpp)

    def _create(self, messages: list[Message], settings: GenerationSettings,
                llama_cpp: bool) -> openai.Stream[ChatCompletionChunk]:
        # vLLM takes one set of `media_io_kwargs` per request, so only a lone video goes as a video;
        # llama.cpp reads a data URL as one file, so to it a video goes as its stamped frames.
        videos = videos_in(messages)
        as_one = self.send_vllm_fields and len(videos) == 1 and not llama_cpp
        form = VideoForm.JPEG_LIST if as_one else VideoForm.FRAMES
        video_io = video_io_kwargs(videos[0]) if form is VideoForm.JPEG_LIST else None
        options = request_options(settings, visual_budget(messages, settings), self.send_vllm_fields, video_io)
        return self.client.chat.completions.create(
            model=self.name, messages=to_openai_messages(messages, form), stream=True, **options
        )

    def _chunks(self, response: openai.Stream[ChatCompletionChunk]) -> Iterator[ChatCompletionChunk]:
        """The stream's chunks, with a failure part-way told as a `GenerationError`."""
        try:
            yield from response
        except json.JSONDecodeError as error:
            raise GenerationError(
                f"The model server at {self.server} sent a broken reply part-way through the answer. "
                "Try again; if it repeats, look at the server's log."
            ) from error
        except openai.APIError as error:
            raise self.explain(error, streaming=True) from error

    def explain(self, error: openai.APIError, streaming: bool = False) -> GemmaDemoError:
        """The failure as a message that says what happened and what to do."""
        if isinstance(error, openai.APITimeoutError) and streaming:
            return GenerationError(
                f"The model server at {self.server} went silent during the answer. It may have been "
                "stopped (vLLM keeps a stream open while it shuts down) or be overloaded; check it "
                "and try again."
            )
        if isinstance(error, openai.APITimeoutError):
            return GenerationError(
                f"The model server at {self.server} sent nothing for too long. It may be overloaded "
                "or still loading the model; try again in a moment."
            )
        if isinstance(error, openai.APIConnectionError):
            if streaming:
                return GenerationError(
                    f"The connection to the model server at {self.server} broke during the answer. "
                    "The server may have restarted or crashed; try again."
                )
            return ModelUnavailableError(
                f"Cannot reach the model server at {self.server} — is it running? Start it, or "
                "correct --base-url."
            )
        if isinstance(error, openai.APIStatusError):
            return self._explain_status(error)
        detail = error.body if isinstance(error.body, str) else error.message
        return GenerationError(
            f"The model server stopped with an error during the answer: {detail}. "
            "Try again; if it repeats, look at the server's log."
        )

    def _explain_status(self, error: openai.APIStatusError) -> GemmaDemoError:
        status, detail = error.status_code, server_message(error)
        if status == HTTP_NOT_FOUND:
            return ModelUnavailableError(
                f"The server at {self.server} does not serve {self.name!r}{self._available_models()}. "
                "Pass one of its models with --model, or start the server with this one."
            )
        if status in AUTH_STATUSES:
            return ModelUnavailableError(
                f"The server at {self.server} refused the API key (HTTP {status}). "
                f"Pass the right one with --api-key, GEMMA_DEMO_API_KEY or {API_KEY_ENV}."
            )
        if status == HTTP_TOO_LARGE:
            return InvalidInputError(
                f"The request is too large for the server at {self.server}. Use fewer video frames, "
                "a lower image budget, a shorter audio clip or fewer images."
            )
        if status == HTTP_BUSY:
            return GenerationError(f"The server at {self.server} is busy. Try again in a moment.")
        refusal = explain_refusal(detail, self.name) if status in REFUSAL_STATUSES else None
        if refusal is not None:
            return refusal
        if status >= HTTP_SERVER_ERROR:
            return GenerationError(
                f"The model server at {self.server} failed (HTTP {status}: {detail}). "
                "Try again; if it repeats, look at the server's log."
            )
        if status in BAD_REQUEST_STATUSES:
            return InvalidInputError(
                f"The model server refused the request: {detail}. If it is about size, use fewer "
                "video frames, a lower image budget or a shorter prompt."
            )
        return GenerationError(f"The model server at {self.server} answered HTTP {status}: {detail}")

    def _available_models(self) -> str:
        """`" (it serves: a, b)"`, or nothing when the server cannot even list them."""
        try:
            quick = self.client.with_options(max_retries=0, timeout=MODEL_LIST_TIMEOUT_S)
            names = [model.id for model in quick.models.list()]
        except openai.APIError:
            return ""
        if not names:
            return ""
        more = ", …" if len(names) > MAX_LISTED_MODELS else ""
        return f" (it serves: {', '.join(names[:MAX_LISTED_MODELS])}{more})"


@dataclass
class StreamState:
    """What a stream has brought so far; chunks may carry reasoning in a field or inline."""

    started: float
    status: str = ""
    content: str = ""
    reasoning: str = ""
    text_chunks: int = 0
    first_text_at: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    calls: dict[int, dict[str, str]] = field(default_factory=dict)

    def add(self, chunk: ChatCompletionChunk) -> bool:
        """Fold one chunk in; True when it brought text worth showing."""
        if chunk.usage is not None:
            self.prompt_tokens = chunk.usage.prompt_tokens
            self.completion_tokens = chunk.usage.completion_tokens
        brought_text = False
        for choice in chunk.choices:
            thought = reasoning_delta(choice.delta)
            said = choice.delta.content or ""
            for call in choice.delta.tool_calls or ():
                slot = self.calls.setdefault(call.index, {"name": "", "arguments": ""})
                if call.function is not None:
                    slot["name"] += call.function.name or ""
                    slot["arguments"] += call.function.arguments or ""
                brought_text = True
            self.reasoning += thought
            self.content += said
            if thought or said:
                brought_text = True
                self.text_chunks += 1
        if brought_text and self.first_text_at is None:
            self.first_text_at = time.perf_counter()
        return brought_text

    def update(self, done: bool) -> Update:
        split = split_reasoning(self.content)
        reasoning = "\n".join(part for part in (self.reasoning.strip(), split.reasoning) if part)
        # Servers that omit usage send about one token per chunk.
        new_tokens = self.completion_tokens if self.completion_tokens is not None else self.text_chunks
        stats = Stats.timed(self.prompt_tokens or 0, new_tokens, self.started, self.first_text_at, time.perf_counter())
        calls = tuple(server_call(self.calls[index], done) for index in sorted(self.calls))
        return Update(answer=split.answer, reasoning=reasoning, stats=stats, done=done, tool_calls=calls,
                      status=self.status)


def server_call(call: dict[str, str], done: bool) -> ToolCall:
    """A call the server parsed: its arguments arrive as a JSON text, possibly in pieces."""
    try:
        arguments = json.loads(call["arguments"] or "{}")
    except json.JSONDecodeError:
        if not done:
            return ToolCall(call["name"], complete=False, error="the call is still arriving")
        return ToolCall(call["name"], error=f"unreadable arguments: {call['arguments'][:200]}")
    if not isinstance(arguments, dict):
        return ToolCall(call["name"], error="the arguments are not an object")
    return ToolCall(call["name"], arguments)


def reasoning_delta(delta: Any) -> str:
    """vLLM sends `reasoning` (formerly `reasoning_content`); transformers serve `reasoning_content`."""
    for name in ("reasoning", "reasoning_content"):
        value = getattr(delta, name, None)
        if isinstance(value, str) and value:
            return value
    return ""


def request_options(
    settings: GenerationSettings, budget: int | None, vllm_fields: bool, video_io: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Everything of a chat request but the model and messages; greedy is temperature 0.

    `video_io` is the `media_io_kwargs` of a video sent in vLLM's form (`encode.video_io_kwargs`).
    """
    extra: dict[str, Any] = {"chat_template_kwargs": {"enable_thinking": settings.thinking}}
    options: dict[str, Any] = {
        "max_tokens": settings.max_new_tokens,
        "stream_options": {"include_usage": True},
        "temperature": settings.temperature if settings.sampling else 0.0,
    }
    if settings.sampling:
        options["top_p"] = settings.top_p
        if vllm_fields:
            extra["top_k"] = settings.top_k
    if vllm_fields:
        extra["skip_special_tokens"] = False
        if budget is not None:
            extra["mm_processor_kwargs"] = {"max_soft_tokens": budget}
        if video_io is not None:
            extra["media_io_kwargs"] = video_io
    options["extra_body"] = extra
    if settings.tools:
        # vLLM parses Gemma 4's calls itself with `--enable-auto-tool-choice --tool-call-parser gemma4`.
        options["tools"] = list(settings.tools)
    if settings.json_schema is not None:
        options["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": settings.json_schema, "strict": True},
        }
    return options


def visual_budget(messages: list[Message], settings: GenerationSettings) -> int | None:
    """One budget per request: the image budget if any image is sent, else the frame budget."""
    kinds = {part.get("type") for message in messages for part in content_parts(message)}
    if "image" in kinds:
        return settings.image_budget
    if "video" in kinds:
        return settings.video_frame_budget
    return None


def refuses_vllm_fields(error: openai.APIStatusError) -> bool:
    message = server_message(error)
    return error.status_code in BAD_REQUEST_STATUSES and any(field in message for field in VLLM_ONLY_FIELDS)


def server_message(error: openai.APIStatusError) -> str:
    """The server's own words: vLLM's `{"error": {"message"}}` or FastAPI's `{"detail"}`."""
    body = error.body
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)
    if body:
        return str(body)
    return error.response.text or error.message
