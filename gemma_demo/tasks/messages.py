"""What the tasks share to turn uploads into Gemma 4 messages: one user turn, media before text.

The model card advises putting a picture or a sound before the words about it; every
single-shot task builds its turn here so they all follow that order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from gemma_demo.engine.base import Backend, Message, audio_unsupported_message
from gemma_demo.errors import CapabilityError
from gemma_demo.media.audio import AudioSource, load_audio
from gemma_demo.media.timing import SAMPLE_RATE

AudioInput = AudioSource | np.ndarray


def user_turn(media: dict[str, Any], prompt: str) -> list[Message]:
    """One user turn: the media part, then the text."""
    return [{"role": "user", "content": [media, {"type": "text", "text": prompt}]}]


def image_messages(picture: Image.Image, prompt: str) -> list[Message]:
    return user_turn({"type": "image", "image": picture}, prompt)


def audio_messages(samples: np.ndarray, prompt: str) -> list[Message]:
    return user_turn({"type": "audio", "audio": samples}, prompt)


def require_audio(backend: Backend) -> None:
    """Fail before any decoding: a long upload should not be read only to be refused."""
    if not backend.capabilities.audio:
        raise CapabilityError(audio_unsupported_message(backend.name))


def read_audio(audio: AudioInput, max_seconds: float | None = None) -> np.ndarray:
    """Samples at 16 kHz; a bare array is taken to be 16 kHz already, as the model wants."""
    source = (SAMPLE_RATE, audio) if isinstance(audio, np.ndarray) else audio
    return load_audio(source, max_seconds=max_seconds)
