"""Chat messages with decoded media → OpenAI chat messages, the way vLLM and transformers serve read them.

Images go as lossless PNG data URLs, audio as base64 WAV (`input_audio`), and a video as
its frames, each after its `mm:ss` stamp, since that is how Gemma 4 reads a video.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image

from gemma_demo.engine.base import Message
from gemma_demo.media.audio import padded_for_model, to_wav_bytes
from gemma_demo.media.timing import mm_ss

FRAME_JPEG_QUALITY = 90


def to_openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """HF chat messages with media objects → OpenAI chat messages with encoded media."""
    converted = []
    for message in messages:
        content = message["content"]
        if not isinstance(content, str):
            content = [piece for part in content for piece in _convert_part(part)]
        converted.append({"role": message["role"], "content": content})
    return converted


def content_parts(message: Message) -> list[dict[str, Any]]:
    content = message["content"]
    return content if isinstance(content, list) else []


def _convert_part(part: dict[str, Any]) -> list[dict[str, Any]]:
    kind = part.get("type")
    if kind == "text":
        return [{"type": "text", "text": part["text"]}]
    if kind == "image":
        return [image_part(part["image"])]
    if kind == "audio":
        return [audio_part(part["audio"])]
    if kind == "video":
        return video_parts(part["video"])
    raise ValueError(f"Unknown message part type {kind!r}")


def image_part(image: Image.Image) -> dict[str, Any]:
    """Lossless PNG, so the server sees exactly the pixels the local engine would."""
    return {"type": "image_url", "image_url": {"url": _data_url(image.convert("RGB"), "PNG")}}


def audio_part(samples: np.ndarray) -> dict[str, Any]:
    data = base64.b64encode(to_wav_bytes(padded_for_model(samples))).decode("ascii")
    return {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}


def video_parts(video: Any) -> list[dict[str, Any]]:
    """Each frame as a JPEG image after its `mm:ss` stamp, the way Gemma 4 reads a video."""
    parts = []
    for frame, seconds in zip(video.frames, video.timestamps, strict=True):
        url = _data_url(Image.fromarray(np.asarray(frame, dtype=np.uint8)), "JPEG")
        parts.append({"type": "text", "text": mm_ss(seconds)})
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def _data_url(image: Image.Image, image_format: str) -> str:
    buffer = io.BytesIO()
    quality = {"quality": FRAME_JPEG_QUALITY} if image_format == "JPEG" else {}
    image.save(buffer, format=image_format, **quality)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:image/{image_format.lower()};base64,{encoded}"
