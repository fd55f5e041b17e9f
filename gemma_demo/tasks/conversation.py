"""The chat history people see, and the messages the model gets from it.

The history is Gradio's messages format (`{"role", "content": [parts], "metadata"}`),
with each answer's reasoning as its own collapsed message (`metadata={"title": ...}`).
`model_messages` is the one place that turns it into Gemma 4 messages: earlier
reasoning is left out (Gemma 4's model card: strip thoughts from the history), and
every uploaded file is expanded the way its own tab would expand it: a PDF into pages,
audio past 30 s into pieces, a video into sampled frames with `mm:ss` stamps. Each turn
expands the whole history again, so the whole history is measured against the request's
budget (`tasks.budget`) from the files' headers before any of them is decoded.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gemma_demo.engine.base import Message, audio_unsupported_message
from gemma_demo.engine.registry import ModelCapabilities
from gemma_demo.engine.settings import DEFAULT_VIDEO_FRAME_BUDGET
from gemma_demo.errors import CapabilityError, InvalidInputError
from gemma_demo.media.audio import audio_seconds, load_audio
from gemma_demo.media.chunks import split_audio
from gemma_demo.media.images import image_size, load_image
from gemma_demo.media.pdf import PdfMode, page_parts, pdf_pages, survey_pdf
from gemma_demo.media.timing import SAMPLE_RATE
from gemma_demo.media.video_file import probe_video
from gemma_demo.media.video_sampling import FrameSampling, sample_video
from gemma_demo.tasks.budget import (
    Budget,
    MediaLimits,
    MediaUse,
    audio_use,
    available_memory,
    page_use,
    picture_use,
    require_decoded,
    require_within,
    video_use,
)

REASONING_TITLE = "Reasoning"
PDF_MIME = "application/pdf"
ChatMessage = dict[str, Any]  # one message of the Chatbot's history


@dataclass(frozen=True)
class ChatOptions:
    """How uploads become parts; the same for the whole conversation, so every turn expands alike."""

    pdf_mode: PdfMode = PdfMode.IMAGES
    pdf_pages: str = ""
    video_frames: int = 16
    image_budget: int = 280
    video_frame_budget: int = DEFAULT_VIDEO_FRAME_BUDGET
    limits: MediaLimits = MediaLimits()  # the operator's, per request (`--chat-max-pages` and the others)


def text_part(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


def file_part(path: str | Path) -> dict[str, Any]:
    path = str(path)
    return {"type": "file", "file": {"path": path, "mime_type": media_type(path)}}


def parts_of(content: Any) -> list[dict[str, Any]]:
    """Any message content Gradio or an API client may send, as a list of typed parts."""
    items = content if isinstance(content, list) else [content]
    parts = []
    for item in items:
        if isinstance(item, str):
            parts.append(text_part(item))
        elif isinstance(item, dict) and item.get("type") == "text":
            parts.append(text_part(str(item.get("text", ""))))
        elif isinstance(item, dict) and isinstance(item.get("file"), dict):
            parts.append(file_part(item["file"]["path"]))
        elif isinstance(item, dict) and "path" in item:
            parts.append(file_part(item["path"]))
        else:
            raise InvalidInputError("A chat message holds something other than text or a file; send text and files only.")
    return parts


def is_reasoning(message: ChatMessage) -> bool:
    return bool((message.get("metadata") or {}).get("title"))


def model_messages(
    history: list[ChatMessage], capabilities: ModelCapabilities, model_name: str, options: ChatOptions = ChatOptions()
) -> list[Message]:
    """Gemma 4 messages for the whole history: reasoning left out, files expanded, turns merged.

    Every file of the history is measured from its header first and the request refused
    over its budget (`tasks.budget`), so a request that is too large decodes nothing.
    """
    turns = [(m["role"], parts_of(m.get("content"))) for m in history
             if m.get("role") in ("user", "assistant") and not is_reasoning(m)]
    budget = request_budget(capabilities, model_name, options)
    require_within(budget, *_measured(turns, capabilities, model_name, options))
    expansion = _Expansion(capabilities, model_name, options, budget)
    messages: list[Message] = []
    for role, parts in turns:
        if role == "user":
            content = expansion.user_content(parts)
        else:
            content = [p for p in parts if p["type"] == "text" and p["text"].strip()]
        if not content:
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] = _merged(messages[-1]["content"], content, role)
        else:
            messages.append({"role": role, "content": content})
    return messages


def request_budget(capabilities: ModelCapabilities, model_name: str, options: ChatOptions) -> Budget:
    """This request's limits: the operator's, or derived from the model, the budgets and the memory free now."""
    return Budget(options.limits, model_name, capabilities.context_tokens, options.image_budget,
                  options.video_frame_budget, available_memory())


def _merged(earlier: list[dict], later: list[dict], role: str) -> list[dict]:
    """Two messages of one side in a row (Gradio puts each upload apart): media first, then the text."""
    if role == "assistant":
        return earlier + later
    everything = earlier + later
    return [p for p in everything if p["type"] != "text"] + [p for p in everything if p["type"] == "text"]


def _measured(
    turns: list[tuple[str, list[dict]]], capabilities: ModelCapabilities, model_name: str, options: ChatOptions
) -> tuple[MediaUse, MediaUse]:
    """What the whole conversation's files and the new message's (after the last answer) take, from headers."""
    conversation = message = MediaUse()
    for role, parts in turns:
        if role == "assistant":
            message = MediaUse()
            continue
        for part in parts:
            if part["type"] == "file":
                use = _use(part["file"]["path"], capabilities, model_name, options)
                conversation, message = conversation + use, message + use
    return conversation, message


def _use(path: str, capabilities: ModelCapabilities, model_name: str, options: ChatOptions) -> MediaUse:
    kind = _kind(path, capabilities, model_name)
    if kind == "pdf":
        survey = survey_pdf(path, options.pdf_mode, options.pdf_pages, options.image_budget)
        return page_use(survey.pages, survey.pixels, options.image_budget) if survey.pixels else MediaUse()
    if kind == "image":
        return picture_use(image_size(path), options.image_budget)
    if kind == "audio":
        return audio_use(audio_seconds(path) or 0.0)
    return video_use(probe_video(path), options.video_frames, options.video_frame_budget)


def _kind(path: str, capabilities: ModelCapabilities, model_name: str) -> str:
    """"pdf", "image", "audio" or "video", refusing anything else and audio for a model without it."""
    kind = "pdf" if media_type(path) == PDF_MIME else media_type(path).split("/")[0]
    if kind == "audio" and not capabilities.audio:
        raise CapabilityError(audio_unsupported_message(model_name))
    if kind not in ("pdf", "image", "audio", "video"):
        raise InvalidInputError(
            f"{Path(path).name} is not a picture, a sound, a video or a PDF. Attach JPEG/PNG/WebP pictures, "
            "WAV/MP3/FLAC/OGG sound, MP4/WebM video or PDF documents."
        )
    return kind


class _Expansion:
    """Files into parts, the way their own tabs expand them; counts the audio actually decoded,
    since a header can say less than a file holds."""

    def __init__(self, capabilities: ModelCapabilities, model_name: str, options: ChatOptions, budget: Budget):
        self.capabilities, self.model_name, self.options, self.budget = capabilities, model_name, options, budget
        self.heard = 0.0

    def user_content(self, parts: list[dict]) -> list[dict]:
        """Media before the words about it, as the model card advises."""
        media = [piece for p in parts if p["type"] == "file" for piece in self.expand(p["file"]["path"])]
        words = [text_part(p["text"].strip()) for p in parts if p["type"] == "text" and p["text"].strip()]
        return media + words

    def expand(self, path: str) -> list[dict]:
        kind, options = _kind(path, self.capabilities, self.model_name), self.options
        if kind == "pdf":
            return page_parts(pdf_pages(path, options.pdf_mode, options.pdf_pages, options.image_budget))
        if kind == "image":
            return [{"type": "image", "image": load_image(path)}]
        if kind == "audio":
            # Past 30 s the processor would drop the rest: cut at quiet points, each piece its own part.
            return [{"type": "audio", "audio": chunk.samples} for chunk in split_audio(self.audio(path))]
        return [{"type": "video", "video": sample_video(path, FrameSampling(num_frames=options.video_frames))}]

    def audio(self, path: str) -> np.ndarray:
        """The samples, decoded no further than one sample past what the budget has left."""
        left = max(self.budget.audio_seconds().most - self.heard, 0.0)
        samples = load_audio(path, max_seconds=left + 1 / SAMPLE_RATE)
        self.heard += len(samples) / SAMPLE_RATE
        require_decoded(self.budget, self.heard, Path(path).name)
        return samples


def media_type(path: str | Path) -> str:
    """The file's type from its name; Gradio names uploads after the original file."""
    guessed, _ = mimetypes.guess_type(str(path))
    if guessed is None and str(path).lower().endswith((".m4a", ".opus")):
        return "audio/mp4"
    return guessed or "application/octet-stream"
