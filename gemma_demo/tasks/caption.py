"""Captions and free questions about one picture.

This is the plainest image task, so it also owns `image_messages`, the message shape
every image task sends.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass


from gemma_demo.engine.base import Backend
from gemma_demo.errors import InvalidInputError
from gemma_demo.media.images import ImageSource, load_image
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.tasks.messages import image_messages
from gemma_demo.tasks.result import StreamedResult

DEFAULT_SETTINGS = GenerationSettings(sampling=True)  # the model card's temperature, top_p and top_k


class CaptionPreset(enum.Enum):
    SHORT = "short"
    DETAILED = "detailed"
    CUSTOM = "custom"


PRESET_PROMPTS = {
    CaptionPreset.SHORT: "Write a one-sentence caption for this image.",
    CaptionPreset.DETAILED: (
        "Describe this image in detail: the main subject, the setting, the people and objects "
        "and what they are doing, colours, lighting, any visible text, and the overall mood."
    ),
}


@dataclass(frozen=True)
class CaptionResult(StreamedResult):
    preset: CaptionPreset

    def to_json(self) -> dict:
        return {
            "preset": self.preset.value,
            "caption": self.text,
            "reasoning": self.update.reasoning,
            "stats": self.update.stats.to_json(),
            "done": self.done,
        }


def caption_prompt(preset: CaptionPreset, custom_prompt: str = "") -> str:
    if preset is not CaptionPreset.CUSTOM:
        return PRESET_PROMPTS[preset]
    if not custom_prompt.strip():
        raise InvalidInputError(
            "Type a question or an instruction about the picture, or pick the short or detailed caption."
        )
    return custom_prompt.strip()


def caption(
    backend: Backend,
    image: ImageSource,
    preset: CaptionPreset = CaptionPreset.SHORT,
    custom_prompt: str = "",
    settings: GenerationSettings = DEFAULT_SETTINGS,
) -> Iterator[CaptionResult]:
    """Stream a caption; bad input fails before the model is asked anything."""
    prompt = caption_prompt(preset, custom_prompt)
    picture = load_image(image)
    for update in backend.stream(image_messages(picture, prompt), settings):
        yield CaptionResult(update=update, preset=preset)
