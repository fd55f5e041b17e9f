"""Run the requests that arrive together as one batched `generate`, each row streaming to its reader.

Separate `generate` threads for concurrent users fight for the GIL and the cores: on a
2-core CPU four of them made fewer tokens per second in total than one (benchmarks P5).
One `generate` over a batch makes each decoding step serve every row for little more
than the cost of one, on a CPU and even more on a GPU, where a step costs one read of
the weights whatever the batch size.

The policy, in order:
- An idle model starts a request at once. Requests still building their inputs at that
  moment (users who pressed Run together) are waited for, at most `GATHER_S`.
- A request that arrives while a batch runs joins the next batch, with every other
  request waiting by then.
- A running batch takes in compatible requests that arrive after it started when that
  pays: it stops, its rows' tokens so far become part of their prompts, and it starts
  again with the newcomers. It pays when prefilling again costs less than the newcomers
  would wait for the batch to end (so on a GPU nearly always, on a CPU early in an
  answer); a row is carried over at most `MAX_CARRY_OVERS` times.
- Nobody waits behind a long answer: a request still waiting after `QUEUE_PATIENCE_S`
  starts a batch of its own beside the running one.
- Only requests with the same sampling settings and media tensors of the same shape
  share a batch (their tensors are concatenated, prompts left-padded); each row stops
  at its own `max_new_tokens`, end of turn or Stop, and the others go on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from typing import Any

import torch
import torch.nn.functional as F
from transformers import BatchFeature, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

GATHER_S = 0.25
QUEUE_PATIENCE_S = 1.0
MAX_BATCH = 8
MAX_CARRY_OVERS = 2
# Per-token tensors of the processor's output: left-padded when prompts are batched. Every
# other tensor holds media and is concatenated along its first axis; audio features are
# first right-padded to the longest clip, with the values the processor itself pads with.
SEQUENCE_PADDING = {"input_ids": None, "attention_mask": 0, "mm_token_type_ids": 0, "token_type_ids": 0}
TIME_PADDING = {"input_features": 0.0, "input_features_mask": False}

END = object()


@dataclass(eq=False)
class Request:
    """One prompt's place in a batch; its reader takes token ids (then `END` or an error) from `tokens`."""

    inputs: BatchFeature
    generation: dict[str, Any]
    max_new_tokens: int
    end_ids: frozenset[int]
    stop: threading.Event = field(default_factory=threading.Event)
    tokens: SimpleQueue = field(default_factory=SimpleQueue)
    new_tokens: int = 0
    first_token_at: float | None = None
    finished: bool = False
    batch: Batch | None = None
    generated: list[int] = field(default_factory=list)
    carry_overs: int = 0
    batch_key: tuple = field(init=False)

    def __post_init__(self) -> None:
        # Requests with equal keys can share a `generate` call.
        media = tuple(
            (name, tuple(value.shape[2 if name in TIME_PADDING else 1 :]), str(value.dtype))
            for name, value in sorted(self.inputs.items())
            if name not in SEQUENCE_PADDING
        )
        self.batch_key = tuple(sorted(self.generation.items())), media

    def receive(self, token: int, now: float) -> None:
        if not self.wanted():
            self.finish()
            return
        self.new_tokens += 1
        if self.first_token_at is None:
            self.first_token_at = now
        self.generated.append(token)
        self.tokens.put(token)
        if token in self.end_ids or self.new_tokens >= self.max_new_tokens:
            self.finish()

    def finish(self, error: BaseException | None = None) -> None:
        if not self.finished:
            self.finished = True
            self.tokens.put(END if error is None else error)

    def wanted(self) -> bool:
        return not (self.finished or self.stop.is_set())

    def carry_over(self) -> None:
        """Make the tokens generated so far part of the prompt, so a new batch goes on from there."""
        ids = torch.tensor([self.generated], dtype=self.inputs["input_ids"].dtype)
        inputs = dict(self.inputs)
        for name in SEQUENCE_PADDING.keys() & inputs.keys():
            extra = ids if name == "input_ids" else torch.full_like(ids, int(name == "attention_mask"))
            inputs[name] = torch.cat([inputs[name], extra], dim=1)
        self.inputs, self.generated = BatchFeature(inputs), []
        self.carry_overs += 1


@dataclass(eq=False)
class Batch:
    requests: list[Request]
    thread: threading.Thread | None = None
    started_at: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    steps: int = 0
    ending_to_take_more: bool = False

    def over(self) -> bool:
        return all(not request.wanted() for request in self.requests)

    def worth_restarting(self) -> bool:
        """Would prefilling this batch again cost less than waiting for it to end?

        Both are estimated from this batch's own timings: its prefill, scaled by how much
        longer the prompts have grown, against its mean step times the largest budget left.
        """
        rows = [r for r in self.requests if r.wanted()]
        if not rows or self.first_token_at is None or self.steps < 2 or len(rows) >= MAX_BATCH:
            return False
        if any(r.carry_overs >= MAX_CARRY_OVERS for r in rows):
            return False
        prompt = max(int(r.inputs["input_ids"].shape[1]) for r in rows)
        prefill_again = (self.first_token_at - self.started_at) * (prompt + self.steps) / prompt
        step = (time.perf_counter() - self.first_token_at) / (self.steps - 1)
        return prefill_again < step * max(r.max_new_tokens - r.new_tokens for r in rows)


def merge_inputs(parts: list[BatchFeature], pad_token_id: int) -> BatchFeature:
    """One batch from single-prompt processor outputs: prompts left-padded, media concatenated."""
    merged = {}
    for name in parts[0]:
        tensors = [part[name] for part in parts]
        length = max(t.shape[1] for t in tensors) if tensors[0].dim() > 1 else 0
        if name in SEQUENCE_PADDING:
            value = pad_token_id if name == "input_ids" else SEQUENCE_PADDING[name]
            tensors = [F.pad(t, (length - t.shape[1], 0), value=value) for t in tensors]
        elif name in TIME_PADDING:
            tensors = [_pad_time(t, length, TIME_PADDING[name]) for t in tensors]
        merged[name] = torch.cat(tensors)
    return BatchFeature(merged)


def _pad_time(tensor: torch.Tensor, length: int, value: float | bool) -> torch.Tensor:
    padding = torch.full((tensor.shape[0], length - tensor.shape[1], *tensor.shape[2:]), value, dtype=tensor.dtype)
    return torch.cat([tensor, padding], dim=1)


class _RowStreamer(BaseStreamer):
    """Hands row i's new token to request i; `generate` calls `put` with the prompt first."""

    def __init__(self, batch: Batch):
        self.batch = batch
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        now = time.perf_counter()
        if self.batch.first_token_at is None:
            self.batch.first_token_at = now
        self.batch.steps += 1
        for request, token in zip(self.batch.requests, value.reshape(-1).tolist()):
            request.receive(token, now)

    def end(self) -> None:
        if not self.batch.ending_to_take_more:
            for request in self.batch.requests:
                request.finish()


class _RowStops(StoppingCriteria):
    """Ends each row on its own (Stop pressed, its reader gone, its token budget spent), or
    every row at once when the batch should start again with requests that arrived since."""

    def __init__(self, batch: Batch, take_more: Callable[[Batch], bool]):
        self.batch = batch
        self.take_more = take_more

    def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
        if self.take_more(self.batch):
            self.batch.ending_to_take_more = True
            return torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        done = [not request.wanted() for request in self.batch.requests]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class BatchScheduler:
    """Queues requests for one model and runs them as batches, each batch in a fresh thread.

    Threads live only while there is work, so an unused model holds no thread and can be
    freed; a reader whose batch is over can join its thread. `generate_batch(batch, take_more)`
    is the model call; it ends early when `take_more(batch)` says so.
    """

    def __init__(self, name: str, generate_batch: Callable[[Batch, Callable[[Batch], bool]], None]):
        self.name = name
        self.generate_batch = generate_batch
        self._lock = threading.Condition()
        self._waiting: list[Request] = []
        self._preparing = 0
        self._running = 0

    @contextmanager
    def arriving(self) -> Iterator[Callable[[Request], None]]:
        """Announce a request while its inputs are built; call the yielded function to queue it."""
        submitted = False

        def submit(request: Request) -> None:
            nonlocal submitted
            with self._lock:
                self._preparing -= 1
                submitted = True
                self._waiting.append(request)
                if not self._running:
                    self._start_batch_thread()
                self._lock.notify_all()

        with self._lock:
            self._preparing += 1
        try:
            yield submit
        finally:
            if not submitted:
                with self._lock:
                    self._preparing -= 1
                    self._lock.notify_all()

    def hurry(self, request: Request) -> None:
        """Start a batch beside the running ones for a request that has waited long enough."""
        with self._lock:
            if request in self._waiting:
                self._start_batch_thread()

    def take_more(self, batch: Batch) -> bool:
        """Should `batch` stop and start again with the compatible requests waiting now?"""
        if not self._waiting:
            return False
        with self._lock:
            key = batch.requests[0].batch_key
            joining = any(r.batch_key == key and not r.stop.is_set() for r in self._waiting)
            return joining and batch.worth_restarting()

    def _start_batch_thread(self) -> None:
        self._running += 1
        threading.Thread(target=self._run_one_batch, name=f"generate-{self.name}", daemon=True).start()

    def _run_one_batch(self) -> None:
        """Run the next batch, then hand what waits to a fresh thread, so readers can join this one."""
        with self._lock:
            batch = self._take_batch()
        if batch is not None:
            batch.thread = threading.current_thread()
            for request in batch.requests:
                request.batch = batch
            self._run(batch)
        with self._lock:
            self._running -= 1
            if batch is not None and self._waiting:
                self._start_batch_thread()

    def _take_batch(self) -> Batch | None:
        """The oldest waiting request and those that can share its batch; waits for late arrivals first."""
        give_up = time.monotonic() + GATHER_S
        while self._preparing and time.monotonic() < give_up:
            self._lock.wait(give_up - time.monotonic())
        for request in [r for r in self._waiting if r.stop.is_set()]:
            self._waiting.remove(request)
            request.finish()
        if not self._waiting:
            return None
        key = self._waiting[0].batch_key
        chosen = [r for r in self._waiting if r.batch_key == key][:MAX_BATCH]
        self._waiting = [r for r in self._waiting if r not in chosen]
        return Batch(chosen)

    def _run(self, batch: Batch) -> None:
        try:
            self.generate_batch(batch, self.take_more)
        except BaseException as error:  # noqa: BLE001 - handed to every reader of the batch
            for request in batch.requests:
                request.finish(error)
        finally:
            going_on = [r for r in batch.requests if r.wanted()] if batch.ending_to_take_more else []
            for request in batch.requests:
                if request in going_on:
                    request.carry_over()
                else:
                    request.finish()
            # Requests and their batch point at each other; breaking the cycle frees the
            # prompts' tensors as soon as their readers let go, not at the next full GC.
            batch.requests = []
            with self._lock:
                self._waiting[:0] = going_on


def run_generate(model, batch: Batch, pad_token_id: int, take_more: Callable[[Batch], bool] = lambda b: False) -> None:
    """The one `generate` call for a batch, streaming each row to its request."""
    requests = batch.requests
    inputs = merge_inputs([r.inputs for r in requests], pad_token_id).to(model.device)
    with torch.inference_mode():
        model.generate(
            **inputs,
            max_new_tokens=max(r.max_new_tokens - r.new_tokens for r in requests),
            streamer=_RowStreamer(batch),
            stopping_criteria=StoppingCriteriaList([_RowStops(batch, take_more)]),
            pad_token_id=pad_token_id,
            **requests[0].generation,
        )


def next_tokens(request: Request, scheduler: BatchScheduler, collect_until: float) -> list[Any]:
    """Block for what `request` has received, collecting until `collect_until` (monotonic) or its end.

    A request still waiting for a batch after `QUEUE_PATIENCE_S` is hurried.
    """
    while True:
        try:
            items = [request.tokens.get(timeout=None if request.batch is not None else QUEUE_PATIENCE_S)]
            break
        except Empty:
            scheduler.hurry(request)
    while items[-1] is not END and not isinstance(items[-1], BaseException):
        remaining = collect_until - time.monotonic()
        try:
            items.append(request.tokens.get(timeout=remaining) if remaining > 0 else request.tokens.get_nowait())
        except Empty:
            break
    return items
