"""Tiny random-weight draft ("assistant") models for the tiny targets.

Google publishes one assistant per Gemma 4 checkpoint (`google/gemma-4-e2b-it-assistant`
and siblings): a few decoder layers that read the target's last hidden state and its
stored keys and values instead of keeping a cache of their own. transformers' assisted
generation drives them (`generate(..., assistant_model=...)`). These tiny ones have the
same classes and are sized to their tiny target, so drafting runs offline; with random
weights they rarely guess right, which is what a test of losslessness wants anyway.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    Gemma4AssistantConfig,
    Gemma4AssistantForCausalLM,
    Gemma4TextConfig,
    Gemma4UnifiedAssistantConfig,
    Gemma4UnifiedAssistantForCausalLM,
    Gemma4UnifiedTextConfig,
    GenerationConfig,
)

from gemma_demo.tiny.family import SEED

# Tokens the drafter proposes per round before the target checks them.
DRAFT_TOKENS = 4


def _assistant_text(target_text, text_class):
    """Two layers whose attention matches the keys and values the target stores, layer kind by kind."""
    sliding = target_text.per_layer_config[target_text.layer_types.index("sliding_attention")]
    full = target_text.per_layer_config[target_text.layer_types.index("full_attention")]
    return text_class(
        vocab_size=target_text.vocab_size,
        hidden_size=target_text.hidden_size,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=sliding.num_key_value_heads,
        head_dim=sliding.head_dim,
        global_head_dim=full.head_dim,
        num_global_key_value_heads=full.num_key_value_heads,
        attention_k_eq_v=getattr(target_text, "attention_k_eq_v", False),
        sliding_window=target_text.sliding_window,
        layer_types=["sliding_attention", "full_attention"],
        num_kv_shared_layers=2,
        final_logit_softcapping=target_text.final_logit_softcapping,
        pad_token_id=target_text.pad_token_id,
        bos_token_id=target_text.bos_token_id,
        eos_token_id=target_text.eos_token_id,
        **({} if text_class is Gemma4UnifiedTextConfig else {"hidden_size_per_layer_input": 0, "vocab_size_per_layer_input": 0}),
    )


def _echo_target_head(assistant, model_class, target_dir: str | Path) -> None:
    """Make the first draft of each round the token the target itself would pick.

    A random drafter is never right, so acceptance (and the cache rewinding after a partly
    accepted draft) would never run. So the layers' outputs are zeroed (the residual carries
    the input through), the input projection keeps only the target's hidden state, and the
    final norm and head are the target's: the assistant's first logits equal the target's.
    Later drafts in a round repeat that token, right whenever the target repeats itself.
    """
    from transformers import AutoModelForMultimodalLM

    target = AutoModelForMultimodalLM.from_pretrained(target_dir)
    hidden = target.config.text_config.hidden_size
    with torch.no_grad():
        for name, parameter in assistant.model.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                parameter.zero_()
        assistant.pre_projection.weight.copy_(torch.cat([torch.zeros(hidden, hidden), torch.eye(hidden)], dim=1))
        assistant.post_projection.weight.copy_(torch.eye(hidden))
        assistant.model.norm.weight.fill_(1.0)
        assistant.lm_head.weight.copy_(target.get_output_embeddings().weight)


def build_assistant(target_dir: str | Path, directory: str | Path) -> Path:
    """Write a tiny assistant for the tiny target in `target_dir` to `directory`."""
    target = AutoConfig.from_pretrained(target_dir)
    unified = target.model_type == "gemma4_unified"
    text_class = Gemma4UnifiedTextConfig if unified else Gemma4TextConfig
    config_class = Gemma4UnifiedAssistantConfig if unified else Gemma4AssistantConfig
    model_class = Gemma4UnifiedAssistantForCausalLM if unified else Gemma4AssistantForCausalLM
    config = config_class(
        text_config=_assistant_text(target.text_config, text_class),
        backbone_hidden_size=target.text_config.hidden_size,
    )
    torch.manual_seed(SEED)
    model = model_class(config).eval()
    _echo_target_head(model, model_class, target_dir)
    model.generation_config = GenerationConfig(num_assistant_tokens=DRAFT_TOKENS, num_assistant_tokens_schedule="constant")
    directory = Path(directory)
    model.save_pretrained(directory)
    return directory


def ensure_assistant(target_dir: Path) -> Path:
    """The tiny assistant of the tiny target in `target_dir`, built once beside it."""
    directory = target_dir.with_name(target_dir.name + "-assistant")
    if not (directory / "model.safetensors").exists():
        build_assistant(target_dir, directory)
    return directory
