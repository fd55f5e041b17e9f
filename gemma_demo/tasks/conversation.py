"""The chat history people see, and the messages the model gets from it.

The history is Gradio's messages format (`{"role", "content": [parts], "metadata"}`),
with each answer's reasoning as its own collapsed message (`metadata={"title": ...}`).
`model_messages` is the one place that turns it into Gemma 4 messages: earlier
reasoning is left out (Gemma 4's model card: strip thoughts from the history), and
every uploaded file is expanded the way its own tab would expand it: a PDF into pages,
audio past 30 s into pieces, a video into sampled frames with `mm:ss` stamps.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemma_demo.engine.base import Message, audio_unsupported_message
from gemma_demo.engine.registry import ModelCapabilities
from gemma_demo.errors import CapabilityError, InvalidInputError
from gemma_demo.media.audio import load_audio
from gemma_demo.media.chunks import split_audio
from gemma_demo.media.images import load_image
from gemma_demo.media.pdf import PdfMode, page_parts, read_pdf
from gemma_demo.media.video import FrameSampling, sample_video

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
    """Gemma 4 messages for the whole history: reasoning left out, files expanded, turns merged."""
    messages: list[Message] = []
    for message in history:
        role = message.get("role")
        if role not in ("user", "assistant") or is_reasoning(message):
            continue
        parts = parts_of(message.get("content"))
        if role == "user":
            content = _user_content(parts, capabilities, model_name, options)
        else:
            content = [p for p in parts if p["type"] == "text" and p["text"].strip()]
        if not content:
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] = _merged(messages[-1]["content"], content, role)
        else:
            messages.append({"role": role, "content": content})
    return messages


def _merged(earlier: list[dict], later: list[dict], role: str) -> list[dict]:
    """Two messages of one side in a row (Gradio puts each upload apart): media first, then the text."""
    if role == "assistant":
        return earlier + later
    everything = earlier + later
    return [p for p in everything if p["type"] != "text"] + [p for p in everything if p["type"] == "text"]


def _user_content(
    parts: list[dict], capabilities: ModelCapabilities, model_name: str, options: ChatOptions
) -> list[dict]:
    """Media before the words about it, as the model card advises."""
    media = [piece for p in parts if p["type"] == "file" for piece in _expand(p["file"]["path"], capabilities, model_name, options)]
    words = [text_part(p["text"].strip()) for p in parts if p["type"] == "text" and p["text"].strip()]
    return media + words


def _expand(path: str, capabilities: ModelCapabilities, model_name: str, options: ChatOptions) -> list[dict]:
    kind = media_type(path).split("/")[0]
    if media_type(path) == PDF_MIME:
        return page_parts(read_pdf(path, options.pdf_mode, options.pdf_pages, options.image_budget))
    if kind == "image":
        return [{"type": "image", "image": load_image(path)}]
    if kind == "audio":
        if not capabilities.audio:
            raise CapabilityError(audio_unsupported_message(model_name))
        # Past 30 s the processor would drop the rest: cut at quiet points, each piece its own part.
        return [{"type": "audio", "audio": chunk.samples} for chunk in split_audio(load_audio(path))]
    if kind == "video":
        return [{"type": "video", "video": sample_video(path, FrameSampling(num_frames=options.video_frames))}]
    raise InvalidInputError(
        f"{Path(path).name} is not a picture, a sound, a video or a PDF. Attach JPEG/PNG/WebP pictures, "
        "WAV/MP3/FLAC/OGG sound, MP4/WebM video or PDF documents."
    )


def media_type(path: str | Path) -> str:
    """The file's type from its name; Gradio names uploads after the original file."""
    guessed, _ = mimetypes.guess_type(str(path))
    if guessed is None and str(path).lower().endswith((".m4a", ".opus")):
        return "audio/mp4"
    return guessed or "application/octet-stream"
