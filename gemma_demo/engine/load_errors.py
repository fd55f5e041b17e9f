"""Why a model did not load, in words that say what to do next.

Loading fails deep inside huggingface_hub, transformers or torch, often wrapped once or
twice (transformers re-raises a Hub error as an `OSError`). `explain` walks the chain of
causes and names the first it recognises: a gated model without a token, no network, no
CUDA with `--device cuda`, out of memory, a folder that is not a checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from huggingface_hub.utils import tqdm as hf_tqdm
from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError

from gemma_demo.errors import ModelUnavailableError

# Files a transformers checkpoint of Gemma 4 needs, as (what, patterns any of which will do).
CHECKPOINT_PARTS = (
    ("config.json", ("config.json",)),
    ("weights (*.safetensors)", ("*.safetensors",)),
    ("a tokenizer (tokenizer.json or tokenizer_config.json)", ("tokenizer.json", "tokenizer_config.json")),
    ("a processor config (processor_config.json or preprocessor_config.json)",
     ("processor_config.json", "preprocessor_config.json")),
)
# Phrases of torch's errors when it has no usable CUDA (no driver, a CPU-only build, no GPU).
NO_CUDA_PHRASES = ("nvidia driver", "not compiled with cuda", "no cuda gpus", "cuda driver", "cuda is not available")
OUT_OF_MEMORY_PHRASES = ("out of memory", "can't allocate memory", "cannot allocate memory")


def causes(error: BaseException) -> Iterator[BaseException]:
    """`error` and what it was raised from, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def missing_parts(folder: Path) -> list[str]:
    """The checkpoint parts `folder` lacks."""
    return [what for what, patterns in CHECKPOINT_PARTS if not any(any(folder.glob(p)) for p in patterns)]


def needed_bytes(folder: Path, dtype: torch.dtype | str) -> int | None:
    """About how much memory the weights in `folder` take once loaded as `dtype`."""
    on_disk = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    if not on_disk:
        return None
    try:
        stored = json.loads((folder / "config.json").read_text()).get("dtype", "bfloat16")
    except (OSError, ValueError):
        stored = "bfloat16"
    stored_size = getattr(torch, str(stored), torch.bfloat16).itemsize
    return on_disk * dtype.itemsize // stored_size if isinstance(dtype, torch.dtype) else on_disk


def _is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(error, RuntimeError) and any(p in str(error).lower() for p in OUT_OF_MEMORY_PHRASES)
    )


def _lacks_cuda(error: BaseException) -> bool:
    return isinstance(error, (RuntimeError, AssertionError)) and any(p in str(error).lower() for p in NO_CUDA_PHRASES)


def _out_of_memory(name: str, folder: Path, device: str, dtype: torch.dtype | str) -> str:
    needed = needed_bytes(folder, dtype) if folder.is_dir() else None
    size = f" Its weights need about {hf_tqdm.format_sizeof(needed, 'B', 1000)} as {dtype}." if needed else ""
    return (
        f"Not enough memory on {device} to load {name}.{size} Try --offload (spreads the model over "
        "GPU, CPU memory and disk; slower), or a smaller model such as E2B or E4B."
    )


def _reason(name: str, source: str, folder: Path, error: BaseException, device: str,
            dtype: torch.dtype | str) -> str | None:
    """The recognised cause of one link of the chain, or `None`."""
    if isinstance(error, GatedRepoError):
        return (f"{source} is a gated model and this machine has no access token for it: accept its licence at "
                f"https://huggingface.co/{source}, then run `hf auth login` or set HF_TOKEN.")
    if isinstance(error, RepositoryNotFoundError):
        return f"There is no model {source} on the Hugging Face Hub (or it is private: set HF_TOKEN)."
    if isinstance(error, (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError)):
        return (f"Its weights are not in the local Hugging Face cache and the Hub cannot be reached from here. "
                f"On a machine with internet run `hf download {source}` (after accepting the licence), "
                "or try the app offline with `--model tiny`.")
    if device == "cuda" and _lacks_cuda(error):
        return ("--device cuda was asked for, but torch finds no usable CUDA GPU here (no NVIDIA driver, "
                "or a CPU-only torch). Install the driver and a CUDA build of torch, or use --device auto or cpu.")
    if _is_out_of_memory(error):
        return _out_of_memory(name, folder, device, dtype)
    return None


def explain(name: str, source: str, error: Exception, device: str, dtype: torch.dtype | str) -> ModelUnavailableError:
    """One clear `ModelUnavailableError` for a failed load of `name` from `source`."""
    folder = Path(source)
    for link in causes(error):
        if reason := _reason(name, source, folder, link, device, dtype):
            break
    else:
        if folder.is_dir() and (missing := missing_parts(folder)):
            reason = f"The folder exists but does not hold a loadable Gemma 4 checkpoint: it has no {', no '.join(missing)}."
        elif folder.is_dir():
            reason = ("The folder exists but does not hold a loadable Gemma 4 checkpoint: it has every part, but "
                      "loading failed (a damaged or truncated file, another kind of model, or see the error).")
        elif source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source:
            reason = "There is no such folder: check the path, or name a Hub model such as google/gemma-4-E2B-it."
        else:
            reason = "It could not be loaded."
    return ModelUnavailableError(f"Could not load {name}. {reason} ({type(error).__name__}: {error})")
