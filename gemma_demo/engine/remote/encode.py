"""Chat messages with decoded media → OpenAI chat messages, the way vLLM and transformers serve read them.

Images go as lossless PNG data URLs, audio as base64 WAV (`input_audio`). A video goes
either as its frames, each an image after its `mm:ss` stamp (any server), or, to vLLM, as
one `data:video/jpeg` list of the same frames with `media_io_kwargs` saying where they sit
in the clip: vLLM then writes the stamps as the processor does, and the video counts as one
item against `--limit-mm-per-prompt` instead of one image per frame.
"""

from __future__ import annotations

import base64
import enum
import io
import json
import math
from typing import Any

import numpy as np
from PIL import Image

from gemma_demo.engine.base import Message
from gemma_demo.media.audio import padded_for_model, to_wav_bytes
from gemma_demo.media.timing import mm_ss

FRAME_JPEG_QUALITY = 90
# Frames without a clip position of their own are placed on a millisecond clock.
FALLBACK_FRAME_RATE = 1000.0


class VideoForm(str, enum.Enum):
    """How a sampled video travels to the server."""

    FRAMES = "frames"  # each frame an image after its `mm:ss` stamp; every server reads it
    JPEG_LIST = "jpeg_list"  # vLLM's `data:video/jpeg` list plus `video_io_kwargs`


def to_openai_messages(
    messages: list[Message], video_form: VideoForm = VideoForm.FRAMES
) -> list[dict[str, Any]]:
    """HF chat messages with media objects → OpenAI chat messages with encoded media."""
    converted = []
    for message in messages:
        content = message.get("content") or ""
        if not isinstance(content, str):
            content = [piece for part in content for piece in _convert_part(part, video_form)]
        converted.extend(_with_tool_turns({"role": message["role"], "content": content}, message))
    return converted


def _with_tool_turns(converted: dict[str, Any], message: Message) -> list[dict[str, Any]]:
    """Gemma 4's assistant message with `tool_calls` and `tool_responses` → OpenAI's call + role:tool messages."""
    calls = message.get("tool_calls") or []
    if not calls:
        return [converted]
    ids = [f"call_{index}" for index in range(len(calls))]
    converted["tool_calls"] = [
        {"id": ids[i], "type": "function",
         "function": {"name": c["function"]["name"], "arguments": json.dumps(c["function"]["arguments"])}}
        for i, c in enumerate(calls)
    ]
    answers = [
        {"role": "tool", "tool_call_id": ids[i], "content": json.dumps(r["response"], ensure_ascii=False)}
        for i, r in enumerate(message.get("tool_responses") or [])
    ]
    return [converted, *answers]


def content_parts(message: Message) -> list[dict[str, Any]]:
    content = message["content"]
    return content if isinstance(content, list) else []


def videos_in(messages: list[Message]) -> list[Any]:
    return [part["video"] for message in messages for part in content_parts(message) if part.get("type") == "video"]


def _convert_part(part: dict[str, Any], video_form: VideoForm) -> list[dict[str, Any]]:
    kind = part.get("type")
    if kind == "text":
        return [{"type": "text", "text": part["text"]}]
    if kind == "image":
        return [image_part(part["image"])]
    if kind == "audio":
        return [audio_part(part["audio"])]
    if kind == "video":
        return [video_part(part["video"])] if video_form is VideoForm.JPEG_LIST else video_parts(part["video"])
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
        url = _data_url(_frame_image(frame), "JPEG")
        parts.append({"type": "text", "text": mm_ss(seconds)})
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def video_part(video: Any) -> dict[str, Any]:
    """The frames as one vLLM video item: a `video/jpeg` data URL of comma-separated JPEGs."""
    frames = ",".join(_encoded(_frame_image(frame), "JPEG") for frame in video.frames)
    return {"type": "video_url", "video_url": {"url": f"data:video/jpeg;base64,{frames}"}}


def video_io_kwargs(video: Any) -> dict[str, Any]:
    """vLLM's `media_io_kwargs` for `video_part`: it stamps frame i at `frames_indices[i] / fps`,
    as the processor does locally. `num_frames` -1 keeps every frame (vLLM's default keeps 32)."""
    if hasattr(video, "frame_indices"):  # a `SampledVideo`: the clip's own frame numbers
        fps, indices, total = video.fps, list(video.frame_indices), video.total_frames
    else:
        fps = FALLBACK_FRAME_RATE
        indices = [math.floor(seconds * fps) for seconds in video.timestamps]
        total = max(indices, default=0) + 1
    return {"video": {"fps": fps, "frames_indices": indices, "total_num_frames": total, "num_frames": -1}}


def _frame_image(frame: Any) -> Image.Image:
    return Image.fromarray(np.asarray(frame, dtype=np.uint8))


def _data_url(image: Image.Image, image_format: str) -> str:
    return f"data:image/{image_format.lower()};base64,{_encoded(image, image_format)}"


def _encoded(image: Image.Image, image_format: str) -> str:
    buffer = io.BytesIO()
    quality = {"quality": FRAME_JPEG_QUALITY} if image_format == "JPEG" else {}
    image.save(buffer, format=image_format, **quality)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
