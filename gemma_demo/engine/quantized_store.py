"""Quantized layers kept on disk, so that a second start reads them instead of the bf16 weights.

A checkpoint's weights are mapped from its safetensors file, and only the pages a layer
touches count in the process's memory. Quantizing at load touches every bf16 weight of the
decoder (and needs float copies while it rounds): on the real E2B size a caption with
`--quantize int4` peaked above the bf16 run (P18). So the first load quantizes and saves the
new layers here; later loads map this file instead and never touch the decoder's bf16 pages.

The file is named by everything that shapes its contents: the checkpoint's files (path, size,
modification time), the setting, the device and the torch and torchao versions. It is only
ever read by this module, from files it wrote. At most `MAX_FILES` are kept, the least
recently used removed first.
"""

from __future__ import annotations

import hashlib
import logging
import os
from importlib.metadata import version
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

STORE_ENV = "GEMMA_DEMO_QUANTIZED_CACHE"
DEFAULT_STORE = Path.home() / ".cache" / "gemma_demo" / "quantized"
MAX_FILES = 4
LAYOUT = 2  # bump when the stored modules change shape


def store_dir() -> Path:
    return Path(os.environ.get(STORE_ENV, DEFAULT_STORE))


def store_path(folder: str, setting: str, device: str) -> Path | None:
    """Where `folder`'s layers at `setting` are kept; None for a Hub id not yet in a folder."""
    root = Path(folder)
    if not root.is_dir():
        return None
    digest = hashlib.sha256(f"{LAYOUT} {setting} {device} {torch.__version__} {version('torchao')}".encode())
    for file in sorted(root.glob("*.safetensors")):
        stat = file.stat()
        digest.update(f"{file.resolve()} {stat.st_size} {stat.st_mtime_ns}".encode())
    return store_dir() / f"{root.name}-{setting}-{digest.hexdigest()[:16]}.pt"


def load_layers(path: Path | None) -> dict[str, nn.Module] | None:
    """The stored layers by module name, mapped from disk; None when there are none."""
    if path is None or not path.exists():
        return None
    try:
        layers = torch.load(path, mmap=True, weights_only=False)  # a file this module wrote
    except Exception as error:  # noqa: BLE001 - a damaged file is quantized again, not fatal
        log.warning("Could not read the quantized layers in %s (%s); quantizing again", path, error)
        path.unlink(missing_ok=True)
        return None
    os.utime(path)  # most recently used
    return layers


def save_layers(path: Path | None, layers: dict[str, nn.Module]) -> None:
    """Keep `layers` for the next start: written aside, then renamed, so no reader sees half a file."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    for layer in layers.values():
        for module in layer.modules():
            # torchao gives a quantized layer its own `extra_repr`, a bound method pickle cannot rebuild.
            module.__dict__.pop("extra_repr", None)
    try:
        torch.save(layers, partial)
        partial.replace(path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        log.warning("Could not keep the quantized layers in %s: %s", path, error)
        return
    stored = sorted(path.parent.glob("*.pt"), key=lambda file: file.stat().st_mtime, reverse=True)
    for old in stored[MAX_FILES:]:
        old.unlink(missing_ok=True)
