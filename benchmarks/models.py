"""Random-weight Gemma 4 models for the benchmarks, built offline.

Speed and memory do not depend on what the weights say, only on the architecture and
dtype, so random weights in the real Gemma 4 classes measure what a real checkpoint
would cost. Checkpoints are written once to the cache folder and loaded the way the app
loads any local folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from transformers import (
    Gemma4Config,
    Gemma4ForCausalLM,
    Gemma4ForConditionalGeneration,
    Gemma4Processor,
    Gemma4TextConfig,
    PreTrainedModel,
)
from transformers.initialization import no_init_weights

from benchmarks.common import CACHE_DIR, GB
from benchmarks.reference_configs import REFERENCE_CONFIGS
from gemma_demo.tiny.family import model_card_generation_config
from gemma_demo.tiny.model import build_config, build_processor

# E2B's layout (per-layer embeddings, KV sharing, double-wide MLP) at ~133M parameters,
# 0.53 GB of float32 safetensors: big enough that the model, not Python, sets the pace.
SMALL_SHAPE = {"hidden_size": 768, "num_hidden_layers": 14, "intermediate_size": 3072, "num_attention_heads": 8,
               "num_key_value_heads": 1, "head_dim": 64, "global_head_dim": 128, "num_kv_shared_layers": 2,
               "hidden_size_per_layer_input": 64, "sliding_window": 512}
FULL_EVERY = 4
MEDIA_TOKEN_FIELDS = ("boi_token_id", "eoi_token_id", "image_token_id", "video_token_id", "boa_token_id",
                      "eoa_token_id", "eoa_token_index", "audio_token_id")
DERIVED_TEXT_FIELDS = ("per_layer_config", "model_type", "transformers_version", "architectures", "_name_or_path")
INIT_RANGE = 0.02
FILL_BLOCK = 2**24  # random values copied round into every weight
REAL_SIZE_DIR = CACHE_DIR / "models" / "real-e2b"
REAL_SIZE_MARKER = "real-size-build.sha256"
REAL_SIZE_FREE_BYTES = 11 * GB  # 9.6 GB of weights, and room to spare
TEXT_TOKEN_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id")

M = TypeVar("M", bound=torch.nn.Module)


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    parameters: int
    file_bytes: int


def small_config() -> Gemma4Config:
    """The tiny E2B config (tokenizer, vision and audio towers) with a ~133M text decoder."""
    base = build_config("e2b", build_processor())
    layers = SMALL_SHAPE["num_hidden_layers"]
    kinds = ["full_attention" if (i + 1) % FULL_EVERY == 0 else "sliding_attention" for i in range(layers)]
    kinds[-1] = "full_attention"
    fields = {k: v for k, v in base.text_config.to_dict().items() if k not in DERIVED_TEXT_FIELDS}
    text = Gemma4TextConfig(**{**fields, **SMALL_SHAPE, "layer_types": kinds})
    media_ids = {name: getattr(base, name) for name in MEDIA_TOKEN_FIELDS}
    return Gemma4Config(text_config=text, vision_config=base.vision_config, audio_config=base.audio_config,
                        tie_word_embeddings=True, **media_ids)


def small_checkpoint(seed: int = 0) -> Checkpoint:
    """A ~133M float32 checkpoint with processor, written once per seed (seeds give distinct files)."""
    directory = CACHE_DIR / "models" / f"small-e2b-seed{seed}"
    weights = directory / "model.safetensors"
    if not weights.exists():
        torch.manual_seed(seed)
        model = Gemma4ForConditionalGeneration(small_config()).eval()
        model.generation_config.eos_token_id = model.config.text_config.eos_token_id
        model.save_pretrained(directory)
        build_processor().save_pretrained(directory)
    parameters = _count_parameters(small_config())
    return Checkpoint(directory, parameters, weights.stat().st_size)


def real_size_config(processor: Gemma4Processor) -> Gemma4Config:
    """The published E2B config with the tiny tokenizer's id in every token-id field.

    The vocabulary stays at 262,144 rows, so the embedding tables and the LM head cost what
    a real checkpoint's do.
    """
    config = REFERENCE_CONFIGS["e2b"]()
    tiny = build_config("e2b", processor)
    for name in MEDIA_TOKEN_FIELDS:
        setattr(config, name, getattr(tiny, name))
    for name in TEXT_TOKEN_FIELDS:
        setattr(config.text_config, name, getattr(tiny.text_config, name))
    config.eos_token_id = tiny.eos_token_id
    return config


def real_size_checkpoint() -> Path:
    """A folder holding the real E2B architecture in bf16 with random weights and the tiny processor (~9.6 GB).

    The weights are written once; a marker with the config's hash is written after them, so
    a folder left half-written, or built from another config, is built again. The processor
    is saved on every call (it is small), so the folder renders the current prompt format.
    """
    processor = build_processor()
    config = real_size_config(processor)
    fingerprint = hashlib.sha256(config.to_json_string().encode()).hexdigest()
    marker = REAL_SIZE_DIR / REAL_SIZE_MARKER
    REAL_SIZE_DIR.parent.mkdir(parents=True, exist_ok=True)
    # Benchmarks in two processes (llama.cpp's conversion beside a run of ours) build it once.
    with open(REAL_SIZE_DIR.parent / "real-e2b.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists() or marker.read_text(encoding="utf-8") != fingerprint:
            _write_real_size(config, processor, fingerprint)
    processor.save_pretrained(REAL_SIZE_DIR)
    return REAL_SIZE_DIR


def _write_real_size(config: Gemma4Config, processor, fingerprint: str) -> None:
    marker = REAL_SIZE_DIR / REAL_SIZE_MARKER
    shutil.rmtree(REAL_SIZE_DIR, ignore_errors=True)
    REAL_SIZE_DIR.mkdir(parents=True)
    free = shutil.disk_usage(REAL_SIZE_DIR).free
    if free < REAL_SIZE_FREE_BYTES:
        raise RuntimeError(f"{REAL_SIZE_DIR} needs {REAL_SIZE_FREE_BYTES / GB:.0f} GB free, "
                           f"the disk has {free / GB:.1f} GB; free some or set GEMMA_BENCH_CACHE")
    model = random_model(lambda: Gemma4ForConditionalGeneration(config), "cpu", torch.bfloat16)
    with torch.no_grad():
        model.get_input_embeddings().weight[len(processor.tokenizer):].zero_()
    model.generation_config = model_card_generation_config(config.text_config, processor.tokenizer)
    model.save_pretrained(REAL_SIZE_DIR)
    del model
    marker.write_text(fingerprint, encoding="utf-8")


def _count_parameters(config: Gemma4Config) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in Gemma4ForConditionalGeneration(config).parameters())


def reference_model(name: str, device: str, dtype: torch.dtype, text_only: bool = False, vocab: int | None = None):
    """The real architecture `name` (e2b, e4b) with random weights, built in place on `device`.

    With `vocab`, embedding rows from `vocab` on are zeroed: the tied LM head then never
    prefers a token the small benchmark tokenizer cannot print, yet every byte of the real
    table is still read.
    """
    config = REFERENCE_CONFIGS[name]()
    model_class = Gemma4ForCausalLM if text_only else Gemma4ForConditionalGeneration
    model_config = config.text_config if text_only else config
    model = random_model(lambda: model_class(model_config), device, dtype)
    if vocab is not None:
        with torch.no_grad():
            model.get_input_embeddings().weight[vocab:].zero_()
    return model


def random_model(build: Callable[[], M], device: str, dtype: torch.dtype) -> M:
    """`build()`, allocated uninitialised in `dtype` on `device`, weights filled from one random block.

    Drawing 5-8B random numbers on two CPU cores takes most of a minute, copying them
    seconds, and speed does not depend on the values.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with no_init_weights(), torch.device(device):
            model = build()
    finally:
        torch.set_default_dtype(previous)
    if isinstance(model, PreTrainedModel):
        model.tie_weights()
    with torch.no_grad():
        _fill_random(model.parameters(), dtype, device)
    return model.eval()


def _fill_random(parameters, dtype: torch.dtype, device: str) -> None:
    block = torch.empty(FILL_BLOCK, dtype=dtype, device=device).uniform_(-INIT_RANGE, INIT_RANGE)
    for parameter in parameters:
        flat = parameter.view(-1)
        for start in range(0, flat.numel(), FILL_BLOCK):
            piece = flat[start:start + FILL_BLOCK]
            piece.copy_(block[: piece.numel()])


def text_model(model) -> torch.nn.Module:
    """The decoder stack of either model class."""
    inner = model.model
    return getattr(inner, "language_model", inner)


def bytes_read_per_token(model) -> int:
    """Weight bytes one decode step must read.

    Every decoder weight is read once per token; the two embedding tables are only
    gathered (one row each), except that the tied LM head reads the whole token table.
    The vision and audio towers are not touched while decoding.
    """
    text = text_model(model)
    tables = [text.embed_tokens.weight]
    if getattr(text, "embed_tokens_per_layer", None) is not None:
        tables.append(text.embed_tokens_per_layer.weight)
    table_ids = {id(t) for t in tables}
    dense = sum(p.numel() * p.element_size() for p in text.parameters() if id(p) not in table_ids)
    rows = sum(t.shape[1] * t.element_size() for t in tables)
    head = model.lm_head.weight
    return dense + rows + head.numel() * head.element_size()


def reference_bytes(name: str, text_only: bool = False, dtype: torch.dtype = torch.bfloat16) -> int:
    """Memory the weights of `reference_model(name, ...)` take, counted without allocating them."""
    config = REFERENCE_CONFIGS[name]()
    with torch.device("meta"):
        model = Gemma4ForCausalLM(config.text_config) if text_only else Gemma4ForConditionalGeneration(config)
    itemsize = torch.empty(0, dtype=dtype).element_size()
    return sum(p.numel() for p in model.parameters()) * itemsize

