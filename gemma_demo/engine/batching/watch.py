"""Which batch the current thread works for, so that Stop can end it between two layers.

Stop used to be checked once per generated token, so a request abandoned during a long
prefill (minutes at real size on a CPU: the towers, then hundreds of prompt tokens)
kept every core busy for nobody until its first token. A check before every layer of
the text decoder and of the towers ends it within one layer instead: it raises
`Abandoned` out of `generate` once no row of the batch is wanted any more.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from gemma_demo.engine.batching.requests import Batch

_current = threading.local()


class Abandoned(Exception):
    """Every row of the running batch was stopped: its work ends here."""


@contextmanager
def working_for(batch: Batch) -> Iterator[None]:
    """Mark `batch` as what this thread computes, until the block ends."""
    previous = getattr(_current, "batch", None)
    _current.batch = batch
    try:
        yield
    finally:
        _current.batch = previous


def current_batch() -> Batch | None:
    return getattr(_current, "batch", None)


def _check(module: nn.Module, args: object) -> None:
    batch = current_batch()
    if batch is not None and batch.requests and batch.over():
        raise Abandoned


def install_stop_checks(model: nn.Module) -> int:
    """A stop check before each layer of every stack in `model`; returns how many."""
    layers = [layer for module in model.modules() if isinstance(module, nn.ModuleList) for layer in module]
    for layer in layers:
        layer.register_forward_pre_hook(_check)
    return len(layers)
