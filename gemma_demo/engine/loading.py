"""Turn a model name into a loaded `LocalBackend`: resolve, pick device and dtype, load."""

from __future__ import annotations

import logging
import shutil
import tempfile
import weakref
from pathlib import Path

import torch

from gemma_demo.engine.compiled_towers import compile_vision_tower
from gemma_demo.engine.cpu_decode import speed_up_cpu_decoding
from gemma_demo.engine.drafting import load_drafter
from gemma_demo.engine.load_errors import explain
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.progress import DownloadBar
from gemma_demo.engine.quantize import quantize_decoder, weight_bytes
from gemma_demo.engine.quantized_store import store_path
from gemma_demo.engine.registry import capabilities_from_config, find_known, is_tiny, tiny_variant
from gemma_demo.engine.towers import towers_in_float32_if_faster

log = logging.getLogger(__name__)

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
# What a Hub snapshot needs for `from_pretrained` of the model and its processor.
CHECKPOINT_FILES = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt"]


def pick_device(requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def bf16_supported(device: str) -> bool:
    """Whether `device` computes in bfloat16 (CUDA from Ampere on, MPS from macOS 14)."""
    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    if device == "mps":
        return torch.backends.mps.is_macos_or_newer(14, 0)
    return True


def pick_dtype(device: str, requested: str = "auto") -> torch.dtype | str:
    """bf16 where the device has it, else float32; the checkpoint's own on CPU.

    Never float16 unless asked for: Gemma's activations overflow it, which shows as
    empty or looping answers, so asking for it gets a warning.
    """
    if requested == "float16":
        log.warning("float16 was asked for: Gemma can overflow in float16 (empty or endless answers); "
                    "prefer bfloat16, or float32 where the device lacks bfloat16.")
    if requested != "auto":
        return DTYPES[requested]
    if device in ("cuda", "mps"):
        return torch.bfloat16 if bf16_supported(device) else torch.float32
    return "auto"


def resolve_source(name: str, options: LoadOptions) -> str:
    """A folder or Hub id for `name`; tiny models are built on first use.

    With `--quantize int4` a known model is read from Google's QAT checkpoint.
    """
    if is_tiny(name):
        from gemma_demo.tiny.model import ensure_tiny_model

        return str(ensure_tiny_model(tiny_variant(name), options.tiny_root))
    spec = find_known(name)
    if spec is not None:
        return spec.qat_repo_id if options.quantize == "int4" else spec.repo_id
    folder = Path(name).expanduser()
    return str(folder) if folder.exists() else name


def fetch(source: str) -> str:
    """A folder holding `source`: itself, or its Hub snapshot, downloaded (with progress) if need be."""
    if Path(source).exists():
        return source
    from huggingface_hub import snapshot_download

    return snapshot_download(source, allow_patterns=CHECKPOINT_FILES, tqdm_class=DownloadBar)


def placement(device: str, options: LoadOptions) -> dict:
    """`from_pretrained` arguments that put the model on `device`, or spread it with `--offload`.

    Offloading lets accelerate fill `device` first, then CPU memory, then `offload_folder`
    (a temporary one, removed with the model, unless `--offload-folder` names one). On the
    CPU only CPU memory and disk are offered, so a GPU the person did not ask for stays unused.
    """
    if not options.offload:
        return {"device_map": device}
    folder = options.offload_folder or tempfile.mkdtemp(prefix="gemma-demo-offload-")
    kwargs = {"device_map": "auto", "offload_folder": folder}
    if device == "cpu" or options.max_memory:
        import psutil

        memory = {"cpu": psutil.virtual_memory().available}
        if options.max_memory:
            memory[0 if device == "cuda" else device] = options.max_memory
        kwargs["max_memory"] = memory
    return kwargs


def load_local_backend(name: str, options: LoadOptions):
    """Load processor and model exactly as for any real checkpoint."""
    from transformers import AutoModelForMultimodalLM, AutoProcessor

    from gemma_demo.engine.local import LocalBackend

    source = resolve_source(name, options)
    device = pick_device(options.device)
    dtype = pick_dtype(device, options.dtype)
    where = placement(device, options)
    # A GPU may not hold the bf16 weights that int4 makes fit: read them on the CPU (mapped from
    # disk, so host memory holds only what is being quantized), quantize there layer by layer.
    late_move = options.quantize != "off" and device != "cpu" and not options.offload
    drafter_map = where["device_map"]
    if late_move:
        where = {"device_map": "cpu"}
    temporary = None if options.offload_folder else where.get("offload_folder")
    log.info("Loading %s from %s on %s (%s)", name, source, device, dtype)
    try:
        folder = fetch(source)
        processor = AutoProcessor.from_pretrained(folder)
        model = AutoModelForMultimodalLM.from_pretrained(folder, dtype=dtype, **where)
    except Exception as error:  # noqa: BLE001 - every loading failure becomes one clear message
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)
        raise explain(name, source, error, device, dtype) from error
    if temporary:
        weakref.finalize(model, shutil.rmtree, temporary, True)
    model.eval()
    drafter, draft_note = load_drafter(name, source, options, dtype=dtype, device_map=drafter_map)
    store = store_path(folder, options.quantize, device) if options.quantize != "off" else None
    quantization = quantize_decoder(model, options.quantize, store, device=device if late_move else None)
    if late_move:
        model.to(device)
    if device == "cpu":
        if towers_in_float32_if_faster(model):
            log.info("The vision and audio towers run in float32: bf16 products are slower on this CPU")
        if switched := speed_up_cpu_decoding(model):
            log.info("%d bf16 linear layers use the single-row CPU fast path", switched)
        if options.compile:
            compile_vision_tower(model, processor)
    memory = weight_bytes(model)
    return LocalBackend(
        name=name,
        model=model,
        processor=processor,
        capabilities=capabilities_from_config(model.config),
        memory_bytes=memory,
        drafter=drafter,
        draft_note=draft_note,
        weights=quantization.setting if quantization else "",
    )
