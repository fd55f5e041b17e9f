"""Architectures of the real Gemma 4 checkpoints, to build offline on the meta device.

E2B and E4B are read from their published `config.json` files, byte-exact copies of which
are in `tests/data/reference/gemma4/` (source and hashes in its README). 26B-A4B
and 31B have no copy there: their text towers are written down below and their vision
tower follows the figures that README publishes (1152 wide, 4304 MLP, 27 layers, 16 heads
of 72, `standardize`, bidirectional attention among image tokens). Keep them in sync if
Google revises a checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import Gemma4Config, Gemma4TextConfig, Gemma4VisionConfig

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "tests" / "data" / "reference" / "gemma4"
_VOCAB = 262_144
# The published figures of the larger vision tower (README of the reference folder).
_BIG_VISION = dict(
    hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
    num_key_value_heads=16, head_dim=72, standardize=True,
)
# Published parameter totals (transformers 5.24, counted on the meta device).
PARAMETERS = {"e2b": 5.104e9, "e4b": 7.941e9, "moe": 25.81e9, "dense": 31.27e9}
# Token ids of the real tokenizer that the configs name.
REAL_TOKEN_NAMES = {1: "<eos>", 106: "<turn|>", 50: "<|tool_response>"}


def published_config(name: str) -> Gemma4Config:
    """A checkpoint's config exactly as published, e.g. `gemma-4-E2B-it`."""
    data = json.loads((REFERENCE_DIR / f"{name}.config.json").read_text(encoding="utf-8"))
    return Gemma4Config.from_dict(data)


def _pattern(layers: int, period: int) -> list[str]:
    """`period - 1` sliding layers then one full layer, the last layer always full."""
    kinds = ["full_attention" if (i + 1) % period == 0 else "sliding_attention" for i in range(layers)]
    kinds[-1] = "full_attention"
    return kinds


def _large(text: Gemma4TextConfig) -> Gemma4Config:
    return Gemma4Config(
        text_config=text,
        vision_config=Gemma4VisionConfig(**_BIG_VISION),
        audio_config=None,
        eos_token_id=[1, 106],
    )


def moe_26b_config() -> Gemma4Config:
    text = Gemma4TextConfig(
        vocab_size=_VOCAB, hidden_size=2816, intermediate_size=2112, num_hidden_layers=30,
        num_attention_heads=16, num_key_value_heads=8, head_dim=256, global_head_dim=512,
        num_global_key_value_heads=2, attention_k_eq_v=True, sliding_window=1024,
        layer_types=_pattern(30, 6), hidden_size_per_layer_input=0, enable_moe_block=True,
        num_experts=128, top_k_experts=8, moe_intermediate_size=704, use_bidirectional_attention="vision",
        final_logit_softcapping=30.0, max_position_embeddings=262_144,
    )
    return _large(text)


def dense_31b_config() -> Gemma4Config:
    text = Gemma4TextConfig(
        vocab_size=_VOCAB, hidden_size=5376, intermediate_size=21504, num_hidden_layers=60,
        num_attention_heads=32, num_key_value_heads=16, head_dim=256, global_head_dim=512,
        num_global_key_value_heads=4, attention_k_eq_v=True, sliding_window=1024,
        layer_types=_pattern(60, 6), hidden_size_per_layer_input=0, use_bidirectional_attention="vision",
        final_logit_softcapping=30.0, max_position_embeddings=262_144,
    )
    return _large(text)


REFERENCE_CONFIGS = {
    "e2b": lambda: published_config("gemma-4-E2B-it"),
    "e4b": lambda: published_config("gemma-4-E4B-it"),
    "moe": moe_26b_config,
    "dense": dense_31b_config,
}
