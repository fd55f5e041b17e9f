"""Run Gemma 4 in this process with transformers, streaming tokens from a worker thread.

`generate` blocks, so it runs in a thread that feeds a `TextIteratorStreamer`. Two things
make this safe: an exception inside `generate` ends the streamer (otherwise the reader
would wait forever) and is re-raised to the caller; and closing the iterator (Stop, a
closed tab) sets a flag that a `StoppingCriteria` checks after every token, so the thread
ends within a token instead of burning the machine for nobody.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from gemma_demo.engine import Message, Stats, Update, check_capabilities, with_system_prompt
from gemma_demo.errors import GenerationError, InvalidInputError
from gemma_demo.media.audio import padded_for_model
from gemma_demo.reasoning import split_reasoning
from gemma_demo.registry import ModelCapabilities
from gemma_demo.settings import GenerationSettings

JOIN_TIMEOUT_S = 30.0


class _StopOnEvent(StoppingCriteria):
    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)


class _CountingStreamer(TextIteratorStreamer):
    """Counts generated tokens and notes when the first one arrived."""

    def __init__(self, tokenizer, **kwargs):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=False, **kwargs)
        self.new_tokens = 0
        self.first_token_at: float | None = None

    def put(self, value) -> None:
        if not (self.skip_prompt and self.next_tokens_are_prompt):
            self.new_tokens += int(value.numel())
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
        super().put(value)


def build_inputs(processor, messages: list[Message], settings: GenerationSettings):
    """Render the prompt with the chat template and let the processor expand the media."""
    images, audios, videos = [], [], []
    for message in messages:
        content = message["content"]
        for part in content if isinstance(content, list) else ():
            kind = part.get("type")
            if kind == "image":
                images.append(part["image"])
            elif kind == "audio":
                audios.append(padded_for_model(part["audio"]))
            elif kind == "video":
                videos.append(part["video"])
    text = processor.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=settings.thinking
    )
    kwargs: dict[str, Any] = {"text": text, "return_tensors": "pt"}
    if images:
        kwargs["images"] = images
        kwargs["images_kwargs"] = {"max_soft_tokens": settings.image_budget}
    if audios:
        kwargs["audio"] = audios
    if videos:
        kwargs["videos"] = [list(video.frames) for video in videos]
        kwargs["video_metadata"] = [video.metadata() for video in videos]
        kwargs["videos_kwargs"] = {
            "do_sample_frames": False,
            "max_soft_tokens": settings.video_frame_budget,
        }
    return processor(**kwargs)


def _generation_kwargs(settings: GenerationSettings) -> dict[str, Any]:
    if not settings.sampling:
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return {
        "do_sample": True,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "top_k": settings.top_k,
    }


@dataclass
class LocalBackend:
    """A loaded model and processor; safe to share between concurrent requests."""

    name: str
    model: Any
    processor: Any
    capabilities: ModelCapabilities
    memory_bytes: int

    def stream(self, messages: list[Message], settings: GenerationSettings) -> Iterator[Update]:
        check_capabilities(messages, self.capabilities, self.name)
        messages = with_system_prompt(messages, settings)
        started = time.perf_counter()
        inputs = build_inputs(self.processor, messages, settings).to(self.model.device)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        self._check_context(prompt_tokens, settings)
        streamer = _CountingStreamer(self.processor.tokenizer)
        stop = threading.Event()
        errors: list[BaseException] = []
        worker = threading.Thread(
            target=self._generate,
            args=(inputs, settings, streamer, stop, errors),
            name=f"generate-{self.name}",
            daemon=True,
        )
        worker.start()
        raw = ""

        def update(done: bool) -> Update:
            first = streamer.first_token_at
            stats = Stats(
                prompt_tokens=prompt_tokens,
                new_tokens=streamer.new_tokens,
                time_to_first_token=None if first is None else first - started,
                elapsed=time.perf_counter() - started,
                model_memory_bytes=self.memory_bytes,
            )
            split = split_reasoning(raw)
            return Update(answer=split.answer, reasoning=split.reasoning, stats=stats, done=done)

        try:
            for chunk in streamer:
                if chunk:
                    raw += chunk
                    yield update(False)
            worker.join(JOIN_TIMEOUT_S)
            if errors:
                raise _as_generation_error(errors[0])
            yield update(True)
        finally:
            stop.set()
            worker.join(JOIN_TIMEOUT_S)

    def _check_context(self, prompt_tokens: int, settings: GenerationSettings) -> None:
        limit = self.capabilities.context_tokens
        if prompt_tokens + settings.max_new_tokens > limit:
            raise InvalidInputError(
                f"The prompt takes {prompt_tokens:,} tokens and {settings.max_new_tokens:,} more were "
                f"asked for, but {self.name} holds {limit:,} in total. Shorten the prompt, lower the "
                "image budget or the number of video frames, or ask for fewer new tokens."
            )

    def _generate(self, inputs, settings, streamer, stop, errors) -> None:
        try:
            with torch.inference_mode():
                self.model.generate(
                    **inputs,
                    max_new_tokens=settings.max_new_tokens,
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([_StopOnEvent(stop)]),
                    **_generation_kwargs(settings),
                )
        except BaseException as error:  # noqa: BLE001 - re-raised in the reader's thread
            errors.append(error)
            streamer.end()


def _as_generation_error(error: BaseException) -> GenerationError:
    if isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower():
        return GenerationError(
            "The model ran out of memory while generating. Lower the image budget, use fewer "
            "video frames or new tokens, or pick a smaller model."
        )
    return GenerationError(f"Generation failed: {type(error).__name__}: {error}")
