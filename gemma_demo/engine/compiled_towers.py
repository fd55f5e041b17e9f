"""`--compile`: the vision tower's layers compiled with `torch.compile` on a CPU.

On a CPU a picture's first token is mostly the vision tower (P14 in docs/benchmarks.md), and
between its matrix products the tower does elementwise work (norms, rotary embeddings, the
clipped linears' clamps) that inductor fuses. Side by side at the real E2B size (a 280-budget
picture, bf16, 2 cores; P13c): 1.15x faster once compiled. The choices, each measured:
- layer by layer: a compiled call cannot take the oneDNN gate inside its graph
  (`cpu_decode`), so it holds the gate for its whole run and another visitor's decode step
  waits for one layer, a sixteenth of the tower, not for all of it. The whole tower compiled
  was no faster (processes one after the other: 5.05-5.50 s whole, 4.97-5.31 s by layer,
  5.99-6.62 s eager). The
  layers share one graph, so the tower compiles once, not sixteen times;
- dynamic shapes from the first call: a picture's patch count follows its budget and shape,
  and one compiled graph serves them all;
- compiled while the model loads, on a small blank picture, so no request waits for it; the
  time it took is logged. Inductor keeps what it builds in `TORCHINDUCTOR_CACHE_DIR`
  (~/.cache/gemma_demo/inductor unless set); a later start reads it, which saved little
  (P13c: 31 s then 28 s), as most of the time goes to tracing and loading the kernels.
The text decoder is not compiled: transformers' static cache with a compiled forward decoded
int4 E2B at 1.05x the eager speed after 159 s of compiling (P16c), its sliding-window layers
recompiling on every step; without them a compiled step ran at about the int4 kernel's own
time by hand, but crashed torch in a benchmark that ran it from fresh threads, as the engine
runs generation (docs/benchmark-history.md). Only on a CPU: on a GPU
the towers are a small part of a first token, and ZeroGPU does not allow `torch.compile`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from gemma_demo.engine.cpu_decode import onednn_side

log = logging.getLogger(__name__)

CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
DEFAULT_CACHE = Path.home() / ".cache" / "gemma_demo" / "inductor"
WARMUP_SIZE = 64  # pixels a side: a few patches, enough to compile the layers
WARMUP_BUDGET = 70


class _CompiledLayer:
    """A layer's `forward`, compiled, run on the oneDNN side of the gate."""

    def __init__(self, forward):
        self.compiled = torch.compile(forward, dynamic=True)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with onednn_side():
            return self.compiled(*args, **kwargs)


def vision_layers(model: nn.Module) -> list[nn.Module]:
    inner = getattr(model, "model", model)
    tower = getattr(inner, "vision_tower", None)
    encoder = getattr(tower, "encoder", None)
    return list(getattr(encoder, "layers", ()))


def compile_layers(layers: list[nn.Module]) -> None:
    """Compile each layer's `forward` on its first call, with inductor's cache where `CACHE_ENV` says."""
    os.environ.setdefault(CACHE_ENV, str(DEFAULT_CACHE))
    for layer in layers:
        if not isinstance(layer.forward, _CompiledLayer):
            layer.forward = _CompiledLayer(layer.forward)


def compile_vision_tower(model: nn.Module, processor) -> None:
    """Compile `model`'s vision layers, if it has any, and run a blank picture through them. Where
    compiling fails (inductor needs a C++ compiler), the layers run as they were."""
    layers = vision_layers(model)
    if not layers:
        return
    compile_layers(layers)
    started = time.perf_counter()
    blank = Image.new("RGB", (WARMUP_SIZE, WARMUP_SIZE))
    inputs = processor.image_processor(images=[blank], max_soft_tokens=WARMUP_BUDGET, return_tensors="pt")
    inner = getattr(model, "model", model)
    try:
        with torch.inference_mode():
            inner.get_image_features(pixel_values=inputs["pixel_values"],
                                     image_position_ids=inputs["image_position_ids"])
    except Exception as error:  # noqa: BLE001 - e.g. no C++ compiler here: the tower still runs, eagerly
        for layer in layers:
            del layer.forward  # the class's own forward again
        log.warning("Could not compile the vision tower (%s: %s); it runs without --compile",
                    type(error).__name__, str(error).splitlines()[0] if str(error) else "")
        return
    log.info("Compiled the vision tower's %d layers in %.1f s (inductor's cache: %s)", len(layers),
             time.perf_counter() - started, os.environ[CACHE_ENV])
