"""Which requests run together, and when: the policy described in the package docstring."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from queue import Empty
from typing import Any

from gemma_demo.engine.batching.requests import END, MAX_BATCH, Batch, Request

GATHER_S = 0.25
QUEUE_PATIENCE_S = 1.0


class BatchScheduler:
    """Queues requests for one model and runs them as batches, each batch in a fresh thread.

    Threads live only while there is work, so an unused model holds no thread and can be
    freed; a reader whose batch is over can join its thread. `generate_batch(batch, scheduler)`
    is the model call: it lets requests `join` the batch before its prefill, and ends early
    when `take_more(batch)` says so.
    """

    def __init__(self, name: str, generate_batch: Callable[[Batch, BatchScheduler], None]):
        self.name = name
        self.generate_batch = generate_batch
        self._lock = threading.Condition()
        self._waiting: list[Request] = []
        self._preparing = 0
        self._running = 0
        self._batches: list[Batch] = []

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
        """Start a batch beside the running ones for a request that has waited long enough.

        Not while a running batch is still encoding or prefilling: a second prefill would
        take the same cores and delay both (on a 2-core CPU two concurrent real-size
        captions both waited 305 s, against 84 s for one alone); a compatible request
        joins that batch before its prefill instead (`join`). Nor beside a batch it could
        join later: that batch's `take_more` weighs a restart against the wait.
        """
        with self._lock:
            if request not in self._waiting or any(b.first_token_at is None for b in self._batches):
                return
            # A batch it could join decides by measured cost when to restart with it (`take_more`).
            if any(b.requests and b.requests[0].batch_key == request.batch_key and b.can_grow() for b in self._batches):
                return
            self._start_batch_thread()

    def join(self, batch: Batch) -> bool:
        """Move the waiting requests that can share `batch` into it, before its prefill; whether any came."""
        with self._lock:
            key = batch.requests[0].batch_key
            room = MAX_BATCH - len(batch.requests)
            joining = [r for r in self._waiting if r.batch_key == key and not r.stop.is_set()][:room]
            self._waiting = [r for r in self._waiting if r not in joining]
            for request in joining:
                request.batch = batch
            batch.requests.extend(joining)
            return bool(joining)

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
            if batch is not None:
                self._batches.remove(batch)
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
        batch = Batch(chosen)
        self._batches.append(batch)
        return batch

    def _run(self, batch: Batch) -> None:
        try:
            self.generate_batch(batch, self)
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


def next_tokens(request: Request, scheduler: BatchScheduler, collect_until: float, give_up: float | None = None) -> list[Any]:
    """Block for what `request` has received, collecting until `collect_until` (monotonic) or its end.

    With `give_up` (monotonic), an empty list if nothing came by then: the reader can tell
    the person what the work is doing meanwhile. A request still waiting for a batch
    `QUEUE_PATIENCE_S` after it was queued is hurried.
    """
    hurry_at = request.queued_at + QUEUE_PATIENCE_S
    while True:
        deadline = min(give_up if give_up is not None else math.inf, hurry_at if request.batch is None else math.inf)
        try:
            items = [request.tokens.get(timeout=None if deadline == math.inf else max(deadline - time.monotonic(), 0))]
            break
        except Empty:
            now = time.monotonic()
            if request.batch is None and now >= hurry_at:
                scheduler.hurry(request)
                hurry_at = now + QUEUE_PATIENCE_S
            if give_up is not None and now >= give_up:
                return []
    while items[-1] is not END and not isinstance(items[-1], BaseException):
        remaining = collect_until - time.monotonic()
        try:
            items.append(request.tokens.get(timeout=remaining) if remaining > 0 else request.tokens.get_nowait())
        except Empty:
            break
    return items
