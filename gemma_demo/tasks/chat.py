"""A multi-turn conversation over pictures, documents, audio and video.

One turn: the new user message joins the history, `conversation.model_messages` turns
the history into Gemma 4 messages (its media first measured from their headers against
the request's budget, `tasks.budget`, and refused before any is decoded), the whole
prompt is measured against the model's context (refused before anything runs when it
cannot fit), and the answer streams back as the updated history, its reasoning a
collapsed message of its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gemma_demo.engine.base import Backend, Message, PromptCount, Update, with_system_prompt
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.errors import InvalidInputError
from gemma_demo.media.timing import SAMPLE_RATE
from gemma_demo.tasks.budget import AUDIO_TOKENS_PER_SECOND, FRAME_STAMP_TOKENS
from gemma_demo.tasks.conversation import (
    REASONING_TITLE,
    ChatMessage,
    ChatOptions,
    file_part,
    model_messages,
    text_part,
)
from gemma_demo.tasks.result import StreamedResult

# Follow-ups extend the last prompt, so the local backend keeps its cache for them.
DEFAULT_SETTINGS = GenerationSettings(max_new_tokens=1024, sampling=True, keep_cache=True)
# Past this many picture tokens in one prompt (about 15 pictures at 1120), memory for the
# vision encoder's activations and the cache gets tight on small GPUs: warn first.
MANY_IMAGE_TOKENS = 16_000
# Rough sizes for a backend that cannot count with the processor (a remote server).
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class ContextUse:
    """How much of the model's context the conversation takes, before the answer."""

    tokens: int
    limit: int
    image_tokens: int = 0
    estimated: bool = False

    def meter(self) -> str:
        share = 100 * self.tokens / self.limit if self.limit else 0.0
        about = "about " if self.estimated else ""
        return f"Context: {about}{self.tokens:,} of {self.limit:,} tokens ({share:.1f}%)"

    def warning(self) -> str:
        if self.image_tokens <= MANY_IMAGE_TOKENS:
            return ""
        return (
            f"This turn carries {self.image_tokens:,} picture tokens, which may run out of memory. "
            "Lower the image budget, attach fewer pages or pictures, or start a new chat if it fails."
        )


@dataclass(frozen=True)
class ChatResult(StreamedResult):
    history: tuple[ChatMessage, ...]
    context: ContextUse

    def to_json(self) -> dict:
        return {
            "answer": self.text,
            "reasoning": self.update.reasoning,
            "context_tokens": self.context.tokens,
            "context_limit": self.context.limit,
            "stats": self.update.stats.to_json(),
            "done": self.done,
        }


def user_message(text: str, files: Sequence[str | Path] = ()) -> ChatMessage:
    """The user's new message as the chat shows it: the files, then the words."""
    content = [file_part(path) for path in files]
    if text and text.strip():
        content.append(text_part(text.strip()))
    if not content:
        raise InvalidInputError("Type a message or attach a file.")
    return {"role": "user", "content": content}


def answer_messages(update: Update) -> list[ChatMessage]:
    """The answer as chat messages: the reasoning (collapsed once done), then the answer."""
    messages: list[ChatMessage] = []
    if update.reasoning:
        status = "done" if update.done or update.answer else "pending"
        messages.append(
            {"role": "assistant", "content": update.reasoning, "metadata": {"title": REASONING_TITLE, "status": status}}
        )
    if update.answer or not messages:
        messages.append({"role": "assistant", "content": update.answer})
    return messages


def chat(
    backend: Backend,
    history: Sequence[ChatMessage],
    message: ChatMessage,
    settings: GenerationSettings = DEFAULT_SETTINGS,
    options: ChatOptions = ChatOptions(),
) -> Iterator[ChatResult]:
    """Stream the answer to `message` after `history`, as the history with the answer growing at its end."""
    asked = (*history, message)
    messages = model_messages(list(asked), backend.capabilities, backend.name, options)
    if not messages or messages[-1]["role"] != "user":
        raise InvalidInputError("Type a message or attach a file.")
    context = measure_context(backend, messages, settings)
    require_room(context, settings, backend.name)
    for update in backend.stream(messages, settings):
        yield ChatResult(update, (*asked, *answer_messages(update)), context)


def measure_context(backend: Backend, messages: list[Message], settings: GenerationSettings) -> ContextUse:
    """The prompt's size counted by the backend's processor, or estimated where it has none."""
    count = getattr(backend, "count_prompt", None)
    estimated = count is None
    size = estimate_prompt(with_system_prompt(messages, settings), settings) if estimated else count(messages, settings)
    return ContextUse(size.tokens, backend.capabilities.context_tokens, size.image_tokens, estimated)


def require_room(context: ContextUse, settings: GenerationSettings, name: str) -> None:
    """Refuse a turn that cannot fit, before anything is generated, saying what to do."""
    if context.tokens + settings.max_new_tokens <= context.limit:
        return
    raise InvalidInputError(
        f"This conversation holds {context.tokens:,} tokens and the answer may take "
        f"{settings.max_new_tokens:,} more, but {name} holds {context.limit:,}. Nothing was generated. "
        "Remove attachments, lower the image budget or the max new tokens, or start a new chat (Clear)."
    )


def estimate_prompt(messages: list[Message], settings: GenerationSettings) -> PromptCount:
    """About what the processor would count: soft tokens per picture and frame, ~4 characters a token."""
    tokens = images = 0
    for message in messages:
        for part in message["content"] if isinstance(message["content"], list) else [text_part(message["content"])]:
            kind = part["type"]
            if kind == "text":
                tokens += len(part["text"]) // CHARS_PER_TOKEN + 1
            elif kind == "image":
                images += settings.image_budget
            elif kind == "audio":
                tokens += int(len(part["audio"]) / SAMPLE_RATE * AUDIO_TOKENS_PER_SECOND)
            elif kind == "video":
                tokens += len(part["video"].frames) * (settings.video_frame_budget + FRAME_STAMP_TOKENS)
    return PromptCount(tokens=tokens + images, image_tokens=images)
