"""ZeroGPU on Hugging Face Spaces: the model loads once at start-up, only generation gets a GPU.

On ZeroGPU a GPU is lent to one `@spaces.GPU` call at a time, for the `duration` the call
asks for; a call that runs past it is killed. So the model is loaded at start-up, on
`cuda`, outside any GPU call (ZeroGPU keeps it ready for the calls), and each endpoint
asks for a duration computed from its work: the tokens it may generate, the 30 s pieces
of a recording, the frames of a video. One model per Space: visitors cannot switch it.

A chat turn (`/chat`, and the page's resend for retry and edit) is several model calls: one
per round of the agent loop, each reading the whole conversation again (every picture, PDF
page, 30 s of audio and video frame of the history and the new message), plus what each
tool call runs; it asks for all of that, up to `MAX_CHAT_SECONDS`. A document (`/ocr_document`)
is one model call per page it reads, each reading one page picture; it asks for as many, up to
`MAX_DOCUMENT_SECONDS`, and one cut off there keeps the pages it read.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from gemma_demo.config import AppConfig
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.errors import GemmaDemoError
from gemma_demo.media.pdf import PdfMode, survey_pdf
from gemma_demo.media.timing import MAX_CLIP_SECONDS
from gemma_demo.tasks.agent import DEFAULT_MAX_STEPS, MAX_STEPS_LIMIT
from gemma_demo.tasks.conversation import PDF_MIME, ChatOptions, is_reasoning, media_type, parts_of
from gemma_demo.tasks.ocr_document import DocumentRequest, chosen_pages
from gemma_demo.tasks.tools.base import DEFAULT_TOOL_TIMEOUT_S
from gemma_demo.tasks.tools.media import VIDEO_TOOL_FRAMES

ZERO_GPU_VARIABLE = "SPACES_ZERO_GPU"
# Conservative figures for the slowest model (31B) on a ZeroGPU slice: a call that asks for
# too little is killed, one that asks for too much only waits longer in ZeroGPU's queue.
SETUP_SECONDS = 20  # moving inputs to the GPU, media decoding, prefill
TOKENS_PER_SECOND = 10
SECONDS_PER_FRAME = 1.0
FALLBACK_AUDIO_SECONDS = 10 * 60  # a recording whose length cannot be read counts as 10 minutes
SECONDS_PER_MEDIA_ITEM = SECONDS_PER_FRAME  # a picture, a PDF page or 30 s of audio, read once more per model call
CHAT_VIDEO_FRAMES = ChatOptions().video_frames  # a video in the chat is read as this many frames
# A chat turn asks for no more: ZeroGPU refuses outright a call that asks for more than a visitor
# may hold one GPU (5 minutes at most, by ZeroGPU's staff), while a turn cut off there keeps what
# it streamed. An agent turn at the defaults (5 rounds of 1,024 tokens) reaches it.
MAX_CHAT_SECONDS = 300
MAX_DOCUMENT_SECONDS = MAX_CHAT_SECONDS  # the same ceiling, for the same reason

Duration = Callable[..., int]


def on_zero_gpu(env: Mapping[str, str] | None = None) -> bool:
    """Running on a ZeroGPU Space: its `spaces` package is installed and its variable set."""
    value = (os.environ if env is None else env).get(ZERO_GPU_VARIABLE, "")
    return value.strip().lower() in {"1", "t", "true"} and importlib.util.find_spec("spaces") is not None


def zero_gpu_config(config: AppConfig) -> AppConfig:
    """The start-up model on `cuda`, and no other model for visitors to switch to."""
    return replace(config, load=replace(config.load, device="cuda"), models=())


def generation_seconds(settings: GenerationSettings, pieces: int = 1, frames: int = 0) -> int:
    """GPU time for `pieces` generations of up to `max_new_tokens` each, over `frames` frames."""
    decode = pieces * settings.max_new_tokens / TOKENS_PER_SECOND
    return math.ceil(SETUP_SECONDS * pieces + decode + frames * SECONDS_PER_FRAME)


def audio_pieces(path: Any) -> int:
    """How many pieces of up to 30 s a recording is transcribed in."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            seconds = container.duration / 1e6 if container.duration else FALLBACK_AUDIO_SECONDS
    except (OSError, ValueError, av.error.FFmpegError):
        seconds = FALLBACK_AUDIO_SECONDS  # the task will refuse it with a clear message
    return max(1, math.ceil(seconds / MAX_CLIP_SECONDS))


def _plain(model: str, settings: GenerationSettings, *inputs: Any) -> int:
    return generation_seconds(settings)


def _speech(model: str, settings: GenerationSettings, audio: Any = None, *rest: Any) -> int:
    return generation_seconds(settings, pieces=audio_pieces(audio) if audio else 1)


def _video(model: str, settings: GenerationSettings, video: Any = None, question: Any = None,
           num_frames: Any = None, *rest: Any) -> int:
    return generation_seconds(settings, frames=int(num_frames or 0))


@dataclass(frozen=True)
class ChatMedia:
    """What a turn's model calls read: media items (each read again by every call), and the 30 s
    pieces of its longest recording (what a `transcribe` call may be asked to write down)."""

    items: int = 0
    longest_recording: int = 0


def chat_media(paths: Iterable[str], pdf_mode: PdfMode, pdf_pages: str) -> ChatMedia:
    """The conversation's files counted from their headers: PDF pages (the chosen range), pictures,
    30 s pieces of audio, video frames. Nothing is decoded or rendered."""
    items = longest = 0
    for path in paths:
        kind = media_type(path)
        if kind == PDF_MIME:
            items += _pdf_pages(path, pdf_mode, pdf_pages)
        elif kind.startswith("image/"):
            items += 1
        elif kind.startswith(("audio/", "video/")):
            pieces = audio_pieces(path)
            items += pieces if kind.startswith("audio/") else CHAT_VIDEO_FRAMES
            longest = max(longest, pieces)
    return ChatMedia(items, longest)


def _pdf_pages(path: str, mode: PdfMode, pages: str) -> int:
    try:
        return survey_pdf(path, mode, pages).pages
    except (GemmaDemoError, OSError, ValueError):
        return 0  # the turn refuses it with its own message before any work


def tool_seconds(name: str, settings: GenerationSettings, media: ChatMedia) -> float:
    """One call's GPU time: the task generation it runs (under the chat's token cap), at most the
    tool timeout, after which the loop abandons it; an operator's tool waits on its server."""
    generation = SETUP_SECONDS + settings.max_new_tokens / TOKENS_PER_SECOND
    work = {
        "detect_objects": generation + SECONDS_PER_MEDIA_ITEM,
        "point_at": generation + SECONDS_PER_MEDIA_ITEM,
        "read_text": generation + SECONDS_PER_MEDIA_ITEM,
        "describe_video": generation + VIDEO_TOOL_FRAMES * SECONDS_PER_FRAME,
        "transcribe": max(media.longest_recording, 1) * generation,
        "calculate": 0.0,
        "current_time": 0.0,
    }
    return min(work.get(name, DEFAULT_TOOL_TIMEOUT_S), DEFAULT_TOOL_TIMEOUT_S)


def chat_seconds(settings: GenerationSettings, media: ChatMedia, agent: bool = False, tools: Iterable[str] = (),
                 max_steps: float = DEFAULT_MAX_STEPS, json_answer: bool = False) -> int:
    """A turn's GPU time: each model call reads the conversation and writes up to `max_new_tokens`;
    the agent makes up to `max_steps` calls (one more for a JSON answer after tools) and runs a
    tool between two of them (the costliest it was offered, one a round)."""
    calls, tool_calls, per_call = 1, 0, 0.0
    if agent:
        steps = min(max(int(max_steps or 1), 1), MAX_STEPS_LIMIT)
        calls, tool_calls = steps + bool(json_answer), steps - 1
        per_call = max((tool_seconds(name, settings, media) for name in tools or ()), default=0.0)
    call = SETUP_SECONDS + settings.max_new_tokens / TOKENS_PER_SECOND + media.items * SECONDS_PER_MEDIA_ITEM
    return min(math.ceil(calls * call + tool_calls * per_call), MAX_CHAT_SECONDS)


def turn_files(message: Any, history: Any, owned: Any) -> list[str]:
    """The files a turn's model calls read: the new message's uploads and the user's files in the
    history, only those the session owns (the turn refuses any other before reading it)."""
    sent = _files_of(message)
    uploads = {os.path.realpath(path) for path in sent}
    earlier = [path for m in history or [] if isinstance(m, dict) and m.get("role") == "user" and not is_reasoning(m)
               for path in _files_of(m)]
    allowed = uploads | set(owned or ())
    return [path for path in [*earlier, *sent] if os.path.realpath(path) in allowed]


def _files_of(message: Any) -> list[str]:
    """A box's message ({"text", "files"}) or a history message's file paths; none if malformed."""
    if not isinstance(message, dict):
        return []
    if "files" in message:
        return [f["path"] if isinstance(f, dict) else str(f) for f in message.get("files") or []]
    try:
        return [part["file"]["path"] for part in parts_of(message.get("content")) if part["type"] == "file"]
    except GemmaDemoError:
        return []


def _chat(model: str, settings: GenerationSettings, message: Any = None, history: Any = None, owned: Any = None,
          pdf_mode: Any = PdfMode.IMAGES.value, pdf_pages: Any = "", agent: Any = False, tools: Any = None,
          max_steps: Any = DEFAULT_MAX_STEPS, json_answer: Any = False, *rest: Any) -> int:
    """`chat_turn`'s and `resend_turn`'s arguments (a new message or the one set aside, then the same)."""
    mode = PdfMode.TEXT if pdf_mode == PdfMode.TEXT.value else PdfMode.IMAGES
    media = chat_media(turn_files(message, history, owned), mode, str(pdf_pages or ""))
    return chat_seconds(settings, media, bool(agent), tools or (), max_steps, bool(json_answer))


def document_pages(document: Any, pages: str) -> int:
    """How many pages a document request reads, counted as the task counts them (from headers).

    A request the task will refuse (an unreadable file, a bad range, too many pages) counts as one.
    """
    files = [document] if isinstance(document, str) else list(document or ())
    try:
        return max(len(chosen_pages(DocumentRequest(tuple(files), pages=pages or None))), 1)
    except (GemmaDemoError, OSError, ValueError):
        return 1


def _document(model: str, settings: GenerationSettings, document: Any = None, mode: Any = None, pages: Any = "",
              *rest: Any) -> int:
    count = document_pages(document, str(pages or ""))
    return min(generation_seconds(settings, pieces=count, frames=count), MAX_DOCUMENT_SECONDS)


# Each endpoint's duration, by API name; they take the wrapped function's arguments.
DURATIONS: dict[str, Duration] = {"transcribe": _speech, "translate": _speech, "video": _video, "chat": _chat,
                                  "chat_resend": _chat, "ocr_document": _document}


def duration_for(api_name: str) -> Duration:
    return DURATIONS.get(api_name, _plain)


def gpu(run: Callable, api_name: str) -> Callable:
    """`run` as a ZeroGPU function that asks for as much time as its work needs."""
    import spaces

    return spaces.GPU(run, duration=duration_for(api_name))
