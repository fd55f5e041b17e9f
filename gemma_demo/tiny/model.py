"""Build a tiny, deterministic, random-weight Gemma 4 that loads like a real checkpoint.

No machine here reaches the Hugging Face Hub, so tests and the offline try-out need a
model of their own. This one uses the real Gemma 4 classes, processor and prompt format
and is written with `save_pretrained`, so `AutoProcessor` / `AutoModelForMultimodalLM`
load it exactly as they load `google/gemma-4-E2B-it`. Its output is gibberish; its code
path is not.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import transformers
from transformers import (
    Gemma4AudioConfig,
    Gemma4AudioFeatureExtractor,
    Gemma4Config,
    Gemma4ForConditionalGeneration,
    Gemma4ImageProcessor,
    Gemma4Processor,
    Gemma4TextConfig,
    Gemma4VideoProcessor,
    Gemma4VisionConfig,
)

from gemma_demo.tiny.family import (
    GEMMA4_RESPONSE_TEMPLATE,
    SEED,
    TinyVariant,
    chat_template,
    model_card_generation_config,
)
from gemma_demo.tiny.tokenizer import build_tokenizer

DEFAULT_TINY_DIR = Path.home() / ".cache" / "gemma_demo" / "tiny"
TINY_ROOT_ENV = "GEMMA_DEMO_TINY_ROOT"
BUILD_MARKER = "tiny-build.sha256"


def _text_config(variant: TinyVariant, vocab_size: int, special: dict[str, int]) -> Gemma4TextConfig:
    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=2,
        num_key_value_heads=1,
        # vLLM's CPU attention takes head sizes 32, 64, 80, … only; 16 kills its engine.
        head_dim=32,
        global_head_dim=64,
        sliding_window=64,
        final_logit_softcapping=30.0,
        pad_token_id=special["<pad>"],
        bos_token_id=special["<bos>"],
        eos_token_id=[special["<eos>"], special["<turn|>"]],
    )
    if variant is TinyVariant.E2B:
        # KV sharing needs both layer kinds among the non-shared layers (0 and 1).
        return Gemma4TextConfig(
            **common,
            num_hidden_layers=4,
            layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
            num_kv_shared_layers=2,
            vocab_size_per_layer_input=vocab_size,
            hidden_size_per_layer_input=8,
            use_double_wide_mlp=True,
            max_position_embeddings=131_072,
        )
    layer_types = ["sliding_attention", "sliding_attention", "full_attention"]
    large = dict(
        **common,
        num_hidden_layers=3,
        layer_types=layer_types,
        hidden_size_per_layer_input=0,
        attention_k_eq_v=True,
        num_global_key_value_heads=1,
        max_position_embeddings=262_144,
    )
    if variant is TinyVariant.MOE:
        return Gemma4TextConfig(
            **large, enable_moe_block=True, num_experts=4, top_k_experts=2, moe_intermediate_size=32
        )
    return Gemma4TextConfig(**large)


def _vision_config() -> Gemma4VisionConfig:
    # Patch size 16 and pooling 3 must stay: the image processor's token budgets assume them.
    return Gemma4VisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=16,
        patch_size=16,
        pooling_kernel_size=3,
        default_output_length=280,  # as the published configs; vLLM refuses a config without it
    )


def _audio_config() -> Gemma4AudioConfig:
    # The first subsampling channel count must equal the 128 mel bins of the feature extractor.
    return Gemma4AudioConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        subsampling_conv_channels=[128, 8],
        output_proj_dims=32,
    )


def build_processor(variant: TinyVariant | str = TinyVariant.E2B) -> Gemma4Processor:
    tokenizer = build_tokenizer()
    tokenizer.response_template = GEMMA4_RESPONSE_TEMPLATE
    return Gemma4Processor(
        feature_extractor=Gemma4AudioFeatureExtractor(),
        image_processor=Gemma4ImageProcessor(),
        tokenizer=tokenizer,
        video_processor=Gemma4VideoProcessor(),
        chat_template=chat_template(variant),
    )


def build_config(variant: TinyVariant | str, processor: Gemma4Processor) -> Gemma4Config:
    variant = TinyVariant(variant)
    tokenizer = processor.tokenizer
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in tokenizer.all_special_tokens}
    ids.update({t: tokenizer.convert_tokens_to_ids(t) for t in ("<pad>", "<bos>", "<eos>", "<turn|>")})
    config = Gemma4Config(
        text_config=_text_config(variant, len(tokenizer), ids),
        vision_config=_vision_config(),
        audio_config=_audio_config() if variant is TinyVariant.E2B else None,
        boi_token_id=ids["<|image>"],
        eoi_token_id=ids["<image|>"],
        image_token_id=ids["<|image|>"],
        video_token_id=ids["<|video|>"],
        boa_token_id=ids["<|audio>"],
        eoa_token_id=ids["<audio|>"],
        eoa_token_index=ids["<audio|>"],
        audio_token_id=ids["<|audio|>"],
        tie_word_embeddings=True,
    )
    return _with_published_flags(config, variant, [ids["<eos>"], ids["<turn|>"]])


def _with_published_flags(config: Gemma4Config, variant: TinyVariant, eos_ids: list[int]) -> Gemma4Config:
    """Switch on the code paths the published checkpoints take but the config defaults leave off.

    Every real vision tower clips its linears; 26B-A4B and 31B also standardise the soft tokens
    and let image tokens attend to each other both ways (a different mask in transformers).
    The top-level end ids are the published `[<eos>, <turn|>]`.
    """
    config.vision_config.use_clipped_linears = True
    if variant is not TinyVariant.E2B:
        config.vision_config.standardize = True
        config.text_config.use_bidirectional_attention = "vision"
    config.eos_token_id = eos_ids
    return config


def build_tiny_model(directory: str | Path, variant: TinyVariant | str = TinyVariant.E2B) -> Path:
    """Write a tiny Gemma 4 checkpoint (config, weights, processor) to `directory`."""
    variant = TinyVariant(variant)
    directory = Path(directory)
    processor = build_processor(variant)
    config = build_config(variant, processor)
    torch.manual_seed(SEED)
    model = Gemma4ForConditionalGeneration(config).eval()
    model.generation_config = model_card_generation_config(config.text_config, processor.tokenizer)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def ensure_tiny_model(variant: TinyVariant | str = TinyVariant.E2B, root: Path | None = None) -> Path:
    """The tiny checkpoint for `variant` (or `unified`, the 12B), built once and reused from the cache folder.

    Rebuilt when the builder, its tokenizer or its chat template changed since, so a cached
    model never renders an old prompt format.
    """
    from gemma_demo.tiny.unified import UNIFIED, build_unified_model

    name = UNIFIED if variant == UNIFIED else TinyVariant(variant).value
    root = root or Path(os.environ.get(TINY_ROOT_ENV, DEFAULT_TINY_DIR))
    directory = root / name
    marker, fingerprint = directory / BUILD_MARKER, builder_fingerprint()
    if not marker.exists() or marker.read_text(encoding="utf-8") != fingerprint:
        if name == UNIFIED:
            build_unified_model(directory)
        else:
            build_tiny_model(directory, name)
        marker.write_text(fingerprint, encoding="utf-8")
    return directory


def builder_fingerprint() -> str:
    """A hash of every file that decides what a tiny checkpoint holds."""
    digest = hashlib.sha256(transformers.__version__.encode())
    for path in sorted(Path(__file__).parent.iterdir()):
        if path.suffix in (".py", ".jinja"):
            digest.update(path.read_bytes())
    return digest.hexdigest()
