"""Turn a model name into a loaded `LocalBackend`: resolve, pick device and dtype, load."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from gemma_demo.engine.cpu_decode import speed_up_cpu_decoding
from gemma_demo.errors import ModelUnavailableError
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.registry import capabilities_from_config, find_known, is_tiny, tiny_variant

log = logging.getLogger(__name__)

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}




def pick_device(requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str, requested: str = "auto") -> torch.dtype | str:
    """bf16 on CUDA (fp16 where unsupported), fp16 on MPS, the checkpoint's own on CPU."""
    if requested != "auto":
        return DTYPES[requested]
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return "auto"


def resolve_source(name: str, options: LoadOptions) -> str:
    """A folder or Hub id for `name`; tiny models are built on first use."""
    if is_tiny(name):
        from gemma_demo.tiny.model import ensure_tiny_model

        return str(ensure_tiny_model(tiny_variant(name), options.tiny_root))
    spec = find_known(name)
    if spec is not None:
        return spec.repo_id
    folder = Path(name).expanduser()
    return str(folder) if folder.exists() else name


def _looks_like_folder(name: str) -> bool:
    """A path rather than a Hub id, which is `namespace/name` and never starts with `/`, `.` or `~`."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def _unavailable(name: str, source: str, error: Exception) -> ModelUnavailableError:
    if Path(source).exists():
        hint = "The folder exists but does not hold a loadable Gemma 4 checkpoint (config, weights, processor)."
    elif _looks_like_folder(name):
        hint = "There is no such folder: check the path, or name a Hub model such as google/gemma-4-E2B-it."
    else:
        hint = (
            "Its weights are neither in the local Hugging Face cache nor downloadable from here. "
            f"On a machine with internet run `hf download {source}` (after accepting the licence), "
            "or try the app offline with `--model tiny`."
        )
    return ModelUnavailableError(f"Could not load {name}. {hint} ({type(error).__name__}: {error})")


def load_local_backend(name: str, options: LoadOptions):
    """Load processor and model exactly as for any real checkpoint."""
    from transformers import AutoModelForMultimodalLM, AutoProcessor

    from gemma_demo.engine.local import LocalBackend

    source = resolve_source(name, options)
    device = pick_device(options.device)
    dtype = pick_dtype(device, options.dtype)
    log.info("Loading %s from %s on %s (%s)", name, source, device, dtype)
    try:
        processor = AutoProcessor.from_pretrained(source)
        if options.offload:
            model = AutoModelForMultimodalLM.from_pretrained(source, dtype=dtype, device_map="auto")
        else:
            model = AutoModelForMultimodalLM.from_pretrained(source, dtype=dtype, device_map=device)
    except Exception as error:  # noqa: BLE001 - every loading failure becomes one clear message
        raise _unavailable(name, source, error) from error
    model.eval()
    if device == "cpu":
        if switched := speed_up_cpu_decoding(model):
            log.info("%d bf16 linear layers use the single-row CPU fast path", switched)
    memory = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    return LocalBackend(
        name=name,
        model=model,
        processor=processor,
        capabilities=capabilities_from_config(model.config),
        memory_bytes=memory,
    )
