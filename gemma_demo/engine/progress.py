"""How far a model load has got: bytes downloaded, then weights loaded.

The first run of a real checkpoint downloads 10-60 GB and then loads it, for minutes.
huggingface_hub and transformers report both through tqdm progress bars; `reporting`
copies what those bars count into one `LoadProgress`, which every request waiting for
the model reads (the page shows it). The bars themselves still print to stderr, where
the CLI's progress belongs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from huggingface_hub.utils import tqdm as hf_tqdm

DOWNLOADING = "Downloading"
LOADING_WEIGHTS = "Loading weights"


@dataclass(frozen=True)
class LoadState:
    """One reading of a load: `done` of `total` units (bytes, or weights) in `stage`."""

    model: str
    stage: str
    done: float = 0
    total: float | None = None
    unit: str = ""

    @property
    def fraction(self) -> float | None:
        return min(self.done / self.total, 1.0) if self.total else None

    def describe(self) -> str:
        if not self.total:
            return f"{self.stage} {self.model}…"
        if self.unit == "B":
            done, total = (hf_tqdm.format_sizeof(n, "B", 1000) for n in (self.done, self.total))
            return f"{self.stage} {self.model}: {done} of {total}"
        return f"{self.stage} {self.model}: {int(self.done)} of {int(self.total)}"


class LoadProgress:
    """The latest `LoadState` of one load; written by the loading thread, read by any."""

    def __init__(self, model: str):
        self._lock = threading.Lock()
        self._state = LoadState(model, "Preparing")

    @property
    def state(self) -> LoadState:
        with self._lock:
            return self._state

    def report(self, stage: str, done: float, total: float | None, unit: str = "") -> None:
        with self._lock:
            self._state = LoadState(self._state.model, stage, done, total, unit)


_active: LoadProgress | None = None


class DownloadBar(hf_tqdm):
    """huggingface_hub's bar (still drawn on stderr) that also reports the bytes of a snapshot download.

    Pass it as `snapshot_download(..., tqdm_class=DownloadBar)`. Of the bars that makes,
    the `SNAPSHOT_BYTES` one counts the bytes of the checkpoint's files against their sum
    (the other counts network bytes, whose total is unknown). Bytes are counted here, not
    read from `self.n`, because a bar that is not drawn (no terminal) does not count.
    """

    SNAPSHOT_BYTES = "huggingface_hub.snapshot_download"

    def __init__(self, *args: Any, **kwargs: Any):
        self._reports = kwargs.get("name") == self.SNAPSHOT_BYTES
        self._counted = kwargs.get("initial") or 0
        super().__init__(*args, **kwargs)

    def update(self, n: float | None = 1) -> bool | None:
        self._counted += n or 0
        if self._reports and _active is not None:
            _active.report(DOWNLOADING, self._counted, self.total or None, "B")
        return super().update(n)


class _WeightsBar:
    """transformers' "Loading weights" bar, reporting each weight as it is loaded."""

    def __init__(self, bar: Any, total: int | None, progress: LoadProgress):
        self._bar, self._total, self._progress = bar, total, progress

    def __iter__(self) -> Iterator:
        self._progress.report(LOADING_WEIGHTS, 0, self._total)
        for done, item in enumerate(self._bar, start=1):
            yield item
            self._progress.report(LOADING_WEIGHTS, done, self._total)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bar, name)


@contextmanager
def reporting(progress: LoadProgress) -> Iterator[None]:
    """Route the download and weight-loading bars into `progress` while a load runs.

    One load runs at a time (the model cache sees to it), so process-wide hooks are safe.
    """
    from transformers.utils import logging as hf_logging

    global _active

    def hook(factory, args, kwargs):
        bar = factory(*args, **kwargs)
        if kwargs.get("desc") != LOADING_WEIGHTS:
            return bar
        # Counted from the iterable: with progress bars disabled, `bar` is a stub without a total.
        total = kwargs.get("total") or (len(args[0]) if args and hasattr(args[0], "__len__") else None)
        return _WeightsBar(bar, total, progress)

    _active = progress
    previous = hf_logging.set_tqdm_hook(hook)
    try:
        yield
    finally:
        hf_logging.set_tqdm_hook(previous)
        _active = None
