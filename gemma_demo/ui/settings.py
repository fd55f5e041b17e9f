"""The settings panel every tab shares, and how its values become a task's settings.

Tasks differ in what they need (OCR reads small print at 1120 image tokens, a web page
needs thinking and room for 4000 tokens), so the panel does not hold one fixed value
for those: "task default" keeps each task's own choice unless a person overrides it.
The same values are parameters of every API endpoint, so API clients get the same
defaults as the page.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, fields

import gradio as gr

from gemma_demo.engine.base import audio_unsupported_message
from gemma_demo.errors import InvalidInputError
from gemma_demo.engine.registry import capabilities_for_name, find_known, is_tiny
from gemma_demo.engine.settings import (
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_K,
    DEFAULT_TOP_P,
    DEFAULT_VIDEO_FRAME_BUDGET,
    IMAGE_BUDGETS,
    GenerationSettings,
)

TASK_DEFAULT = "default"
THINKING_CHOICES = (("Task default", TASK_DEFAULT), ("On", "on"), ("Off", "off"))
# Open-ended tasks sample with the model card's values by default, extraction tasks decode greedily.
SAMPLING_CHOICES = THINKING_CHOICES
# API clients written before "default" was the image budget's task default send 0; it still means that.
LEGACY_DEFAULT_BUDGET = 0
MAX_NEW_TOKENS_LIMIT = 8192
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 2.0
MAX_TOP_K = 200
SYSTEM_PROMPT_LIMIT = 4000


@dataclass(frozen=True)
class SettingsChoice:
    """What the panel holds; `None`, "default" and 0 mean "the task's own value"."""

    model: str
    max_new_tokens: int | None = None
    thinking: str = TASK_DEFAULT
    sampling: str = TASK_DEFAULT
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    top_k: int = DEFAULT_TOP_K
    system_prompt: str = ""
    image_budget: int | str = TASK_DEFAULT
    video_frame_budget: int = DEFAULT_VIDEO_FRAME_BUDGET


SETTING_NAMES = tuple(field.name for field in fields(SettingsChoice))

# One line per setting, appended to every endpoint's docstring (the API page and MCP read them).
SETTINGS_DOC = {
    "model": "Gemma 4 model: one the app offers (its start-up model unless its operator allows others).",
    "max_new_tokens": f"Most tokens to generate (1-{MAX_NEW_TOKENS_LIMIT}); 0 or empty for the task's default.",
    "thinking": "'on' or 'off' to let the model reason before answering; 'default' for the task's choice.",
    "sampling": "'on' to sample with temperature, top_p and top_k, 'off' for greedy decoding; "
    "'default' for the task's choice (open-ended tasks sample, extraction tasks are greedy).",
    "temperature": f"Sampling temperature ({MIN_TEMPERATURE:g}-{MAX_TEMPERATURE:g}); used only when sampling.",
    "top_p": "Nucleus sampling probability mass (0-1]; used only when sampling.",
    "top_k": "Sample among the k most likely tokens; used only when sampling.",
    "system_prompt": "Optional system instruction sent before the request.",
    "image_budget": f"Soft tokens per image, one of {IMAGE_BUDGETS}; 'default' for the task's (OCR 1120, others 280).",
    "video_frame_budget": f"Soft tokens per video frame, one of {IMAGE_BUDGETS}.",
}


def validate_choice(choice: SettingsChoice) -> None:
    """Refuse values the panel cannot produce, as API clients can send anything."""
    if not (choice.model or "").strip():
        raise InvalidInputError("Choose a model in the settings.")
    if choice.max_new_tokens and not 1 <= choice.max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
        raise InvalidInputError(f"Max new tokens must be between 1 and {MAX_NEW_TOKENS_LIMIT}, or 0 for the task's own.")
    if choice.thinking not in {value for _, value in THINKING_CHOICES}:
        raise InvalidInputError("Thinking must be 'default', 'on' or 'off'.")
    if choice.sampling not in {value for _, value in SAMPLING_CHOICES}:
        raise InvalidInputError("Sampling must be 'default', 'on' or 'off'.")
    if not (0 < choice.temperature <= MAX_TEMPERATURE and 0 < choice.top_p <= 1 and 1 <= choice.top_k <= MAX_TOP_K):
        raise InvalidInputError(
            f"Use a temperature above 0 up to {MAX_TEMPERATURE:g}, a top-p above 0 up to 1 "
            f"and a top-k from 1 to {MAX_TOP_K}."
        )
    if choice.image_budget not in (TASK_DEFAULT, LEGACY_DEFAULT_BUDGET, *IMAGE_BUDGETS):
        raise InvalidInputError(f"The image token budget must be 'default' (the task's) or one of {IMAGE_BUDGETS}.")
    if choice.video_frame_budget not in IMAGE_BUDGETS:
        raise InvalidInputError(f"The token budget per video frame must be one of {IMAGE_BUDGETS}.")
    if len(choice.system_prompt or "") > SYSTEM_PROMPT_LIMIT:
        raise InvalidInputError(f"The system prompt is longer than {SYSTEM_PROMPT_LIMIT} characters; shorten it.")


def settings_for(choice: SettingsChoice, defaults: GenerationSettings) -> GenerationSettings:
    """The task's defaults with every value the person set laid over them."""
    validate_choice(choice)
    return defaults.with_changes(
        max_new_tokens=int(choice.max_new_tokens or defaults.max_new_tokens),
        thinking=defaults.thinking if choice.thinking == TASK_DEFAULT else choice.thinking == "on",
        sampling=defaults.sampling if choice.sampling == TASK_DEFAULT else choice.sampling == "on",
        temperature=float(choice.temperature),
        top_p=float(choice.top_p),
        top_k=int(choice.top_k),
        system_prompt=choice.system_prompt or "",
        image_budget=_image_budget(choice.image_budget, defaults),
        video_frame_budget=int(choice.video_frame_budget),
    )


def _image_budget(value: int | str, defaults: GenerationSettings) -> int:
    """The chosen budget; "default" (or a legacy client's 0) is the task's own."""
    return defaults.image_budget if value in (TASK_DEFAULT, LEGACY_DEFAULT_BUDGET) else int(value)


def settings_parameters() -> list[inspect.Parameter]:
    """The settings as optional parameters, for endpoint signatures.

    The API takes each default from its component's value; a `None` default here is what
    makes a setting optional even where that value is empty (the system prompt).
    """
    return [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for name in SETTING_NAMES]


def model_choices(allowed: Sequence[str]) -> list[tuple[str, str]]:
    """The models the operator allows, each with a label that says what it is."""
    return [(_model_label(name), name) for name in allowed]


def _model_label(name: str) -> str:
    spec = find_known(name)
    if spec is not None:
        return f"{spec.label} · {spec.description}"
    return f"{name} · random weights, to try the app offline" if is_tiny(name) else name


def audio_note(model: str) -> str:
    """Empty when `model` hears audio; otherwise what to pick instead. Needs no download."""
    return "" if capabilities_for_name(model).audio else f"**{audio_unsupported_message(model)}**"


def build_settings_panel(models: Sequence[str]) -> list[gr.components.Component]:
    """The accordion's inputs in `SETTING_NAMES` order, ready to append to any event's inputs.

    `models` are the ones visitors may pick, the start-up model first.
    """
    with gr.Accordion("Model and generation settings", open=False):
        with gr.Row():
            model_box = gr.Dropdown(
                model_choices(models), value=models[0], label="Model", scale=2, interactive=len(models) > 1,
                allow_custom_value=True,  # so that an API call naming another model hears why it is refused
                info="Loaded on first use. The app's operator chooses which models it offers (--models).",
            )
            # The browser turns an empty number field into 0, so 0 is what means "the task's own".
            max_new_tokens = gr.Number(
                0, label="Max new tokens", minimum=0, maximum=MAX_NEW_TOKENS_LIMIT, precision=0,
                info="0: each task's own limit.",
            )
            thinking = gr.Radio(THINKING_CHOICES, value=TASK_DEFAULT, label="Thinking", info="Reasoning shows apart.")
        with gr.Row():
            sampling = gr.Radio(SAMPLING_CHOICES, value=TASK_DEFAULT, label="Sampling",
                                info="Off: greedy, repeatable. By default captions, chat, pages and questions sample.")
            temperature = gr.Slider(MIN_TEMPERATURE, MAX_TEMPERATURE, DEFAULT_TEMPERATURE, step=MIN_TEMPERATURE,
                                    label="Temperature")
            top_p = gr.Slider(0.05, 1, DEFAULT_TOP_P, step=0.01, label="Top-p")
            top_k = gr.Slider(1, MAX_TOP_K, DEFAULT_TOP_K, step=1, label="Top-k")
        with gr.Row():
            image_budget = gr.Dropdown(
                [("Task default (OCR 1120, others 280)", TASK_DEFAULT), *((str(b), b) for b in IMAGE_BUDGETS)],
                value=TASK_DEFAULT, label="Image tokens", info="More tokens keep more detail.",
                allow_custom_value=True,  # so that a legacy API client's 0 reaches `validate_choice`
            )
            video_frame_budget = gr.Dropdown(
                [(str(b), b) for b in IMAGE_BUDGETS], value=DEFAULT_VIDEO_FRAME_BUDGET, label="Tokens per video frame"
            )
            system_prompt = gr.Textbox(label="System prompt", lines=2, max_length=SYSTEM_PROMPT_LIMIT, scale=2)
    panel = {
        "model": model_box, "max_new_tokens": max_new_tokens, "thinking": thinking, "sampling": sampling,
        "temperature": temperature, "top_p": top_p, "top_k": top_k, "system_prompt": system_prompt,
        "image_budget": image_budget, "video_frame_budget": video_frame_budget,
    }
    return [panel[name] for name in SETTING_NAMES]
