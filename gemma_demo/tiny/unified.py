"""A tiny random-weight Gemma 4 12B: the encoder-free "unified" architecture.

`google/gemma-4-12B-it` has no vision or audio tower: merged 48-pixel patches and raw
40 ms audio frames are projected straight into the decoder. This variant is built with the
same classes (`Gemma4UnifiedForConditionalGeneration`, its config and `Gemma4UnifiedProcessor`)
so every task runs through that path offline. It shares the tiny tokenizer and the big
family's chat template with `tiny-moe` and `tiny-dense`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    Gemma4UnifiedAudioConfig,
    Gemma4UnifiedAudioFeatureExtractor,
    Gemma4UnifiedConfig,
    Gemma4UnifiedForConditionalGeneration,
    Gemma4UnifiedImageProcessor,
    Gemma4UnifiedProcessor,
    Gemma4UnifiedTextConfig,
    Gemma4UnifiedVideoProcessor,
    Gemma4UnifiedVisionConfig,
)

from gemma_demo.tiny.family import (
    GEMMA4_RESPONSE_TEMPLATE,
    SEED,
    TinyVariant,
    chat_template,
    model_card_generation_config,
)
from gemma_demo.tiny.tokenizer import build_tokenizer

UNIFIED = "unified"
HIDDEN = 64


def build_unified_processor() -> Gemma4UnifiedProcessor:
    tokenizer = build_tokenizer()
    tokenizer.response_template = GEMMA4_RESPONSE_TEMPLATE
    return Gemma4UnifiedProcessor(
        feature_extractor=Gemma4UnifiedAudioFeatureExtractor(),
        image_processor=Gemma4UnifiedImageProcessor(),
        tokenizer=tokenizer,
        video_processor=Gemma4UnifiedVideoProcessor(),
        # The 12B ships the big family's template, as 26B-A4B and 31B do.
        chat_template=chat_template(TinyVariant.DENSE),
    )


def _text_config(vocab_size: int, ids: dict[str, int]) -> Gemma4UnifiedTextConfig:
    # Both layer kinds among the non-shared layers, so KV sharing (and the "store" layers
    # the unified assistant reads) runs as in the real model.
    return Gemma4UnifiedTextConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,  # the smallest head sizes vLLM's CPU attention accepts
        global_head_dim=64,
        sliding_window=64,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        num_kv_shared_layers=2,
        final_logit_softcapping=30.0,
        use_bidirectional_attention="vision",
        max_position_embeddings=262_144,
        pad_token_id=ids["<pad>"],
        bos_token_id=ids["<bos>"],
        eos_token_id=[ids["<eos>"], ids["<turn|>"]],
    )


def build_unified_config(processor: Gemma4UnifiedProcessor) -> Gemma4UnifiedConfig:
    tokenizer = processor.tokenizer
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in tokenizer.all_special_tokens}
    ids.update({t: tokenizer.convert_tokens_to_ids(t) for t in ("<pad>", "<bos>", "<eos>", "<turn|>")})
    # Patch 16 and pooling 3 must stay: the image processor's token budgets assume them;
    # the audio width must equal the feature extractor's 640 samples per token.
    return Gemma4UnifiedConfig(
        text_config=_text_config(len(tokenizer), ids),
        # vLLM reads `num_soft_tokens` (280, the default image budget) and refuses a config
        # without it; transformers has no such field and keeps it as an extra attribute.
        vision_config=Gemma4UnifiedVisionConfig(mm_embed_dim=32, output_proj_dims=32, num_soft_tokens=280),
        audio_config=Gemma4UnifiedAudioConfig(audio_embed_dim=processor.feature_extractor.audio_samples_per_token),
        boi_token_id=ids["<|image>"],
        eoi_token_id=ids["<image|>"],
        image_token_id=ids["<|image|>"],
        video_token_id=ids["<|video|>"],
        boa_token_id=ids["<|audio>"],
        eoa_token_index=ids["<audio|>"],
        audio_token_id=ids["<|audio|>"],
        eos_token_id=[ids["<eos>"], ids["<turn|>"]],
        tie_word_embeddings=True,
    )


def build_unified_model(directory: str | Path) -> Path:
    """Write a tiny Gemma 4 12B checkpoint (config, weights, processor) to `directory`."""
    directory = Path(directory)
    processor = build_unified_processor()
    config = build_unified_config(processor)
    torch.manual_seed(SEED)
    model = Gemma4UnifiedForConditionalGeneration(config).eval()
    model.generation_config = model_card_generation_config(config.text_config, processor.tokenizer)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
