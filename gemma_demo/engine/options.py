"""How to load a model, kept apart from the loader so that reading flags imports no torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


QUANTIZE_CHOICES = ("off", "int8", "int4")


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model; the same fields come from flags or environment variables."""

    backend: str = "local"
    device: str = "auto"  # auto, cuda, mps, cpu
    dtype: str = "auto"  # auto, bfloat16, float16, float32
    offload: bool = False  # device_map="auto": spill layers to CPU/disk on small GPUs
    offload_folder: str | None = None  # where --offload puts weights; a temporary folder when None
    max_memory: str | None = None  # with --offload, the most the model takes on the device, e.g. "6GiB"
    base_url: str | None = None  # remote backend only
    api_key: str | None = None  # remote backend only
    tiny_root: Path | None = None
    # Speculative decoding: auto (the model's published assistant, if loadable), off, or a folder / Hub id.
    draft: str = "off"
    # Text-decoder weights: off (as loaded), int8 or int4 (engine/quantize.py). int4 loads Google's
    # QAT checkpoint of a known model, which was trained to lose little at 4 bits.
    quantize: str = "off"
    # On a CPU, compile the vision tower's layers at load (engine/compiled_towers.py).
    compile: bool = False
