"""Architectures of the real Gemma 4 checkpoints, written down so they can be built offline.

The Hub cannot be reached here, so the parity test (the tiny model exercises the real
code paths) and the CPU/GPU benchmarks build these on the meta device or with random
weights. Values follow the published `config.json` files; keep them in sync if Google
revises a checkpoint.
"""

from __future__ import annotations

from transformers import Gemma4AudioConfig, Gemma4Config, Gemma4TextConfig, Gemma4VisionConfig

_VOCAB = 262_144
_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=16, num_attention_heads=12)


def _pattern(layers: int, period: int) -> list[str]:
    """`period - 1` sliding layers then one full layer, the last layer always full."""
    kinds = ["full_attention" if (i + 1) % period == 0 else "sliding_attention" for i in range(layers)]
    kinds[-1] = "full_attention"
    return kinds


def _multimodal(text: Gemma4TextConfig, audio: bool) -> Gemma4Config:
    return Gemma4Config(
        text_config=text,
        vision_config=Gemma4VisionConfig(**_VISION),
        audio_config=Gemma4AudioConfig() if audio else None,
    )


def e2b_config() -> Gemma4Config:
    text = Gemma4TextConfig(
        vocab_size=_VOCAB, hidden_size=1536, intermediate_size=6144, num_hidden_layers=35,
        num_attention_heads=8, num_key_value_heads=1, head_dim=256, global_head_dim=512,
        sliding_window=512, layer_types=_pattern(35, 5), num_kv_shared_layers=20,
        hidden_size_per_layer_input=256, vocab_size_per_layer_input=_VOCAB,
        use_double_wide_mlp=True, final_logit_softcapping=30.0, max_position_embeddings=131_072,
    )
    return _multimodal(text, audio=True)


def e4b_config() -> Gemma4Config:
    text = Gemma4TextConfig(
        vocab_size=_VOCAB, hidden_size=2560, intermediate_size=10240, num_hidden_layers=42,
        num_attention_heads=8, num_key_value_heads=2, head_dim=256, global_head_dim=512,
        sliding_window=512, layer_types=_pattern(42, 6), num_kv_shared_layers=18,
        hidden_size_per_layer_input=256, vocab_size_per_layer_input=_VOCAB,
        final_logit_softcapping=30.0, max_position_embeddings=131_072,
    )
    return _multimodal(text, audio=True)


def moe_26b_config() -> Gemma4Config:
    text = Gemma4TextConfig(
        vocab_size=_VOCAB, hidden_size=2816, intermediate_size=2112, num_hidden_layers=30,
        num_attention_heads=16, num_key_value_heads=8, head_dim=256, global_head_dim=512,
        num_global_key_value_heads=2, attention_k_eq_v=True, sliding_window=1024,
        layer_types=_pattern(30, 6), hidden_size_per_layer_input=0, enable_moe_block=True,
        num_experts=128, top_k_experts=8, moe_intermediate_size=704,
        final_logit_softcapping=30.0, max_position_embeddings=262_144,
    )
    return _multimodal(text, audio=False)


def dense_31b_config() -> Gemma4Config:
    text = Gemma4TextConfig(
        vocab_size=_VOCAB, hidden_size=5376, intermediate_size=21504, num_hidden_layers=60,
        num_attention_heads=32, num_key_value_heads=16, head_dim=256, global_head_dim=512,
        num_global_key_value_heads=4, attention_k_eq_v=True, sliding_window=1024,
        layer_types=_pattern(60, 6), hidden_size_per_layer_input=0,
        final_logit_softcapping=30.0, max_position_embeddings=262_144,
    )
    return _multimodal(text, audio=False)


REFERENCE_CONFIGS = {
    "e2b": e2b_config,
    "e4b": e4b_config,
    "moe": moe_26b_config,
    "dense": dense_31b_config,
}
