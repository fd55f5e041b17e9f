"""Run Gemma 4 in this process with transformers, streaming tokens to each request's reader.

`generate` blocks, so it runs in a worker thread that `gemma_demo.engine.batching` owns; requests
that arrive together share one batched call. Two things make this safe: an exception
inside `generate` reaches every reader of its batch (otherwise they would wait forever)
and is re-raised to each caller; and closing the iterator (Stop, a closed tab) ends its
row within a token, or a prefill nobody waits for within a layer, instead of burning the
machine for nobody. Token ids are turned into text here, in the reader's thread, so the
generating thread does as little as possible per token. Until the first token, the
stream says what the work is doing (`Update.status`: waiting, encoding the picture or
audio, reading the prompt), so a minute-long prefill on a CPU is never a silent spinner.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from gemma_demo.engine.batching.generate import run_generate
from gemma_demo.engine.batching.requests import END, Batch, Request
from gemma_demo.engine.batching.scheduler import BatchScheduler, next_tokens
from gemma_demo.engine.batching.watch import install_stop_checks
from gemma_demo.engine.drafting import Drafter, draft_record
from gemma_demo.engine.base import Message, PromptCount, Stats, Update, check_capabilities, with_system_prompt
from gemma_demo.engine.prefix_cache import PrefixCache
from gemma_demo.errors import GenerationError, InvalidInputError
from gemma_demo.media.audio import padded_for_model
from gemma_demo.engine.reasoning import split_reasoning
from gemma_demo.engine.registry import ModelCapabilities
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.engine.grammar import JsonConstraint, grammar_problem, grammar_tokenizer, tool_response_ids
from gemma_demo.engine.tool_syntax import without_calls
from gemma_demo.engine.towers import keep_encoded_media

JOIN_TIMEOUT_S = 30.0
# Updates go out at most this often (the first at once, the last at the end). A fast model
# makes hundreds of tokens a second; passing each one on costs every layer above (task
# parsing, Gradio's postprocessing, a message to the browser) GIL time that the generating
# thread needs, and a screen shows no more than about 20 updates a second anyway.
UPDATE_INTERVAL_S = 0.05
# Before the first token, how often the reader looks at what the work is doing (`Request.stage`).
STAGE_POLL_S = 0.5
BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


class _TextDecoder:
    """Text of the token ids so far, never taking back what it has already given.

    Tokens arrive in chunks whose size depends on timing, so the text must not. Decoding
    is a pure function of the ids except at the end: a run of byte tokens (`<0xE2>`, as
    Gemma spells characters outside its vocabulary) is decoded together, and one more byte
    can turn what looked complete into something else. So the text given out stops before
    a trailing run of byte tokens, until a token that ends the run (or the answer) arrives.
    """

    def __init__(self, tokenizer, byte_ids: frozenset[int]):
        self.tokenizer = tokenizer
        self.byte_ids = byte_ids
        self.ids: list[int] = []
        self.sent = 0

    def add(self, ids: list[int], last: bool = False) -> str:
        self.ids += ids
        settled = len(self.ids)
        while not last and settled and self.ids[settled - 1] in self.byte_ids:
            settled -= 1
        text = self.tokenizer.decode(self.ids[:settled], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        new, self.sent = text[self.sent :], len(text)
        return new


def byte_token_ids(tokenizer) -> frozenset[int]:
    return frozenset(i for token, i in tokenizer.get_vocab().items() if BYTE_TOKEN.fullmatch(token))


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
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=settings.thinking,
        tools=list(settings.tools) or None,
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
    drafter: Drafter | None = None
    draft_note: str = ""  # why there is no drafter, for the stats line
    weights: str = ""  # `--quantize` setting of the text decoder (int8, int4), for the stats line
    scheduler: BatchScheduler = field(init=False, repr=False)
    byte_ids: frozenset[int] = field(init=False, repr=False)
    _grammar_tokenizer: Any = field(init=False, repr=False, default=None)
    prefix_cache: PrefixCache = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.scheduler = BatchScheduler(self.name, self._generate)
        install_stop_checks(self.model)
        keep_encoded_media(self.model)
        self.byte_ids = byte_token_ids(self.processor.tokenizer)
        self.prefix_cache = PrefixCache(self.model, self.processor)

    def count_prompt(self, messages: list[Message], settings: GenerationSettings) -> PromptCount:
        """The prompt's size as the processor builds it, before anything runs."""
        ids = build_inputs(self.processor, with_system_prompt(messages, settings), settings)["input_ids"][0]
        image_id = self.processor.tokenizer.convert_tokens_to_ids(self.processor.image_token)
        return PromptCount(tokens=len(ids), image_tokens=int((ids == image_id).sum()))

    def stream(self, messages: list[Message], settings: GenerationSettings) -> Iterator[Update]:
        check_capabilities(messages, self.capabilities, self.name)
        messages = with_system_prompt(messages, settings)
        started = time.perf_counter()
        with self.scheduler.arriving() as submit:
            inputs = build_inputs(self.processor, messages, settings)
            prompt_tokens = int(inputs["input_ids"].shape[1])
            self._check_context(prompt_tokens, settings)
            request = Request(inputs, _generation_kwargs(settings), settings.max_new_tokens, self._end_ids(),
                              constraint=self._constraint(settings), cache_key=self.prefix_cache.key_for(inputs, settings))
            request.draft = draft_record(self.drafter, self.draft_note, request.constraint is not None)
            submit(request)
        decoder = _TextDecoder(self.processor.tokenizer, self.byte_ids)
        raw = ""

        def update(done: bool, status: str = "") -> Update:
            stats = Stats.timed(prompt_tokens, request.new_tokens, started, request.first_token_at,
                                time.perf_counter(), model_memory_bytes=self.memory_bytes, weights=self.weights,
                                **request.draft.stats())
            scan = without_calls(raw, bool(settings.tools))
            split = split_reasoning(scan.text)
            return Update(answer=split.answer, reasoning=split.reasoning, stats=stats, done=done, status=status,
                          tool_calls=scan.calls)

        sent_at, begun, stage = -UPDATE_INTERVAL_S, False, ""
        try:
            while True:
                # Until the first token, wake up now and then to say what the work is doing.
                give_up = None if begun else time.monotonic() + STAGE_POLL_S
                items = next_tokens(request, self.scheduler, sent_at + UPDATE_INTERVAL_S, give_up)
                if not items:
                    if request.stage != stage:
                        stage = request.stage
                        yield update(False, f"{stage}…")
                    continue
                ids = [item for item in items if isinstance(item, int)]
                chunk = decoder.add(ids, last=items[-1] is END)
                raw += chunk
                # The first update goes out with the first token even when it brings no text
                # yet (a character spelled in byte tokens): it tells the caller the answer began.
                if (chunk or not begun) and ids and items[-1] is not END:
                    sent_at, begun = time.monotonic(), True
                    yield update(False)
                last = items[-1]
                if isinstance(last, BaseException):
                    _release(request)
                    raise _as_generation_error(last)
                if last is END:
                    break
            _release(request)
            _raise_grammar_failure(request)
            yield update(True)
        finally:
            _release(request)

    def _end_ids(self) -> frozenset[int]:
        ids = self.model.generation_config.eos_token_id
        ends = frozenset([ids] if isinstance(ids, int) else ids or ())
        # After a call the model waits for its result: `<|tool_response>` always ends its part,
        # as in the published generation config, even where a checkpoint's config omits it.
        return ends | tool_response_ids(self.processor.tokenizer)

    def _constraint(self, settings: GenerationSettings) -> JsonConstraint | None:
        if settings.json_schema is None:
            return None
        return JsonConstraint.build(self.grammar_tokenizer(), settings.json_schema)

    def grammar_tokenizer(self):
        """llguidance's view of the vocabulary: built once per model (about a second)."""
        if self._grammar_tokenizer is None:
            self._grammar_tokenizer = grammar_tokenizer(self.processor.tokenizer, self.model)
        return self._grammar_tokenizer

    def _check_context(self, prompt_tokens: int, settings: GenerationSettings) -> None:
        limit = self.capabilities.context_tokens
        if prompt_tokens + settings.max_new_tokens > limit:
            raise InvalidInputError(
                f"The prompt takes {prompt_tokens:,} tokens and {settings.max_new_tokens:,} more were "
                f"asked for, but {self.name} holds {limit:,} in total. Shorten the prompt, lower the "
                "image budget or the number of video frames, or ask for fewer new tokens."
            )

    def _generate(self, batch: Batch, scheduler: BatchScheduler) -> None:
        """One batch; chat turns prefill from (and keep) their conversations' caches, then decode together."""
        pad_token_id = self.processor.tokenizer.pad_token_id
        if batch.requests[0].cache_key is not None:
            self.prefix_cache.run(batch, pad_token_id, scheduler.join)
        else:
            run_generate(self.model, batch, pad_token_id, scheduler.take_more, scheduler.join)


def _release(request: Request) -> None:
    """Stop the request's row; once its whole batch is over, wait for its thread to end."""
    request.stop.set()
    batch = request.batch
    if batch is not None and batch.over() and batch.thread is not None:
        batch.thread.join(JOIN_TIMEOUT_S)


def _raise_grammar_failure(request: Request) -> None:
    """A grammar that gave up partway (llguidance's lexer limits) ended the answer: say so, not "cut off"."""
    matcher = getattr(request.constraint, "matcher", None)
    if matcher is not None and matcher.is_error():
        raise InvalidInputError(grammar_problem(matcher.get_error()))


def _as_generation_error(error: BaseException) -> GenerationError:
    if isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower():
        return GenerationError(
            "The model ran out of memory while generating. Lower the image budget, use fewer "
            "video frames or new tokens, or pick a smaller model."
        )
    return GenerationError(f"Generation failed: {type(error).__name__}: {error}")
