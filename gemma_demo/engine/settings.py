"""Generation settings shared by every task and backend."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

# Soft tokens per image that Gemma 4's vision encoder accepts; more keeps more detail.
IMAGE_BUDGETS = (70, 140, 280, 560, 1120)
DEFAULT_IMAGE_BUDGET = 280
DEFAULT_VIDEO_FRAME_BUDGET = 70  # the video processor's own default per frame

# Model-card sampling defaults.
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 0.95
DEFAULT_TOP_K = 64


@dataclass(frozen=True)
class GenerationSettings:
    """What one request asks of the model; tasks start from their own defaults."""

    max_new_tokens: int = 1024
    sampling: bool = False
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    top_k: int = DEFAULT_TOP_K
    thinking: bool = False
    system_prompt: str = ""
    image_budget: int = DEFAULT_IMAGE_BUDGET
    video_frame_budget: int = DEFAULT_VIDEO_FRAME_BUDGET
    # Agent mode: the tools declared to the model (OpenAI-style function schemas, rendered by
    # the chat template), and a JSON Schema the answer must match (constrained decoding).
    tools: tuple[dict[str, Any], ...] = field(default=(), hash=False)
    json_schema: dict[str, Any] | None = field(default=None, hash=False)
    # Keep the prompt's key/value cache for a follow-up that extends it (the chat); local backend only.
    keep_cache: bool = False
    # Whose cache it is (the visitor's session): a kept cache is only ever found again by its
    # own conversation, and none is kept without one.
    conversation: str = ""

    def __post_init__(self) -> None:
        for name in ("image_budget", "video_frame_budget"):
            if getattr(self, name) not in IMAGE_BUDGETS:
                raise ValueError(f"{name} must be one of {IMAGE_BUDGETS}, got {getattr(self, name)}")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")

    def with_changes(self, **changes) -> GenerationSettings:
        return replace(self, **changes)
