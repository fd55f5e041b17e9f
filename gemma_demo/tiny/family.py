"""What every tiny variant shares: which real model it mirrors, its chat template, its seed,
how its answers are parsed and the published generation defaults.

Kept apart from `model` (the Gemma 4 variants) and `unified` (the 12B) so that both build on
it and neither imports the other at module level.
"""

from __future__ import annotations

import enum
from pathlib import Path

from transformers import GenerationConfig

CHAT_TEMPLATE_PATH = Path(__file__).with_name("chat_template.jinja")
# The one line in which the big family's template differs (see the template's header).
_BIG_FAMILY_FLAG_OFF = "{%- set empty_thought_when_not_thinking = false -%}"
SEED = 0

# Declarative parser template for `processor.parse_response` (the format transformers' own
# Gemma 4 serving uses); stored with the tiny tokenizer so the real parsing path runs.
GEMMA4_RESPONSE_TEMPLATE = {
    "defaults": {"role": "assistant"},
    "start_anchor": ["<|turn>model\n", "<tool_response|>"],
    "fields": {
        "reasoning_content": {"open": "<|channel>thought\n", "close": "<channel|>", "content": "text"},
        "content": {"close": ["<turn|>", "<|tool_response>", "<eos>"], "content": "text"},
    },
}


class TinyVariant(str, enum.Enum):
    """Which member of the real family the tiny model mirrors."""

    E2B = "e2b"  # audio tower, per-layer embeddings, KV sharing
    MOE = "moe"  # 26B-A4B-like mixture of experts, no audio
    DENSE = "dense"  # 31B-like, keys equal values on full layers, no audio


def chat_template(variant: TinyVariant | str = TinyVariant.E2B) -> str:
    """The small-family template (E2B/E4B) for `e2b`, the big-family one (12B, 26B-A4B, 31B) otherwise."""
    template = CHAT_TEMPLATE_PATH.read_text(encoding="utf-8")
    if TinyVariant(variant) is TinyVariant.E2B:
        return template
    if template.count(_BIG_FAMILY_FLAG_OFF) != 1:
        raise RuntimeError(f"{CHAT_TEMPLATE_PATH.name} must keep the line {_BIG_FAMILY_FLAG_OFF!r}")
    return template.replace(_BIG_FAMILY_FLAG_OFF, _BIG_FAMILY_FLAG_OFF.replace("false", "true"))


def model_card_generation_config(text_config, tokenizer) -> GenerationConfig:
    """The published `generation_config.json`: sample at 1.0 / 0.95 / 64, end on `<eos>`,
    `<turn|>` and `<|tool_response>` (a tool call waits for its result)."""
    return GenerationConfig(
        bos_token_id=text_config.bos_token_id,
        eos_token_id=[*text_config.eos_token_id, tokenizer.convert_tokens_to_ids("<|tool_response>")],
        pad_token_id=text_config.pad_token_id,
        do_sample=True,
        temperature=1.0,
        top_p=0.95,
        top_k=64,
    )
