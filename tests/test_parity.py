"""The tiny variants take the same code paths as the real family, read from the published files.

E2B and E4B come from their published `config.json` (see `reference_configs.py`); 26B-A4B
and 31B from the published figures. Each real architecture is built on the meta device, its
parameters counted against the published totals, and every module class, weight and buffer
name, attention kind and code-path flag compared with the tiny variant that mirrors it.
"""

import re

import pytest
import torch
from transformers import Gemma4ForConditionalGeneration

from benchmarks.reference_configs import PARAMETERS, REAL_TOKEN_NAMES, REFERENCE_CONFIGS
from gemma_demo.tiny.model import build_config, build_processor

# Which tiny variant mirrors each real checkpoint (E4B has no tiny twin of its own: it takes
# E2B's paths except the double-wide MLP, which the tiny E2B covers).
TINY_FOR = {"e2b": "e2b", "moe": "moe", "dense": "dense"}
# The published figures of 26B-A4B and 31B do not say whether their vision linears clip; the
# tiny twins clip anyway (as E2B/E4B do) so that path runs with the larger tower's other paths.
UNPUBLISHED = {"moe": {"use_clipped_linears"}, "dense": {"use_clipped_linears"}}
CLIP_BUFFERS = ("input_min", "input_max", "output_min", "output_max")
TEXT_FLAGS = ("enable_moe_block", "attention_k_eq_v", "use_double_wide_mlp", "use_bidirectional_attention")
VISION_FLAGS = ("use_clipped_linears", "standardize", "patch_size", "pooling_kernel_size")


@pytest.fixture(scope="module")
def processor():
    return build_processor()


@pytest.fixture(scope="module")
def real_models():
    with torch.device("meta"):
        return {name: Gemma4ForConditionalGeneration(build()) for name, build in REFERENCE_CONFIGS.items()}


def module_classes(model):
    return {type(module).__name__ for module in model.modules()}


def tensor_names(model):
    """Weight and buffer names with layer numbers taken out: the shape of the code, not its size."""
    names = [name for name, _ in [*model.named_parameters(), *model.named_buffers()]]
    return {re.sub(r"\.\d+\.", ".N.", name) for name in names}


def attention_kinds(model):
    text = model.config.text_config
    return set(text.layer_types), {m for m in text.kv_sharing_modes if m}


def end_tokens(config, tokenizer=None):
    ids = config.eos_token_id
    return [REAL_TOKEN_NAMES[i] if tokenizer is None else tokenizer.convert_ids_to_tokens(i) for i in ids]


@pytest.mark.parametrize("name", list(PARAMETERS))
def test_real_architectures_have_the_published_size(real_models, name):
    count = sum(p.numel() for p in real_models[name].parameters())
    assert count == pytest.approx(PARAMETERS[name], abs=0.0051e9)


def test_published_small_configs_take_the_clipped_and_shared_paths(real_models):
    for name in ("e2b", "e4b"):
        config = real_models[name].config
        assert config.vision_config.use_clipped_linears and config.audio_config.use_clipped_linears
        assert config.text_config.hidden_size_per_layer_input and config.text_config.num_kv_shared_layers
        assert end_tokens(config) == ["<eos>", "<turn|>"]


@pytest.mark.parametrize("variant", list(TINY_FOR))
def test_tiny_variant_uses_the_real_code_paths(processor, real_models, variant):
    real = real_models[TINY_FOR[variant]]
    tiny = Gemma4ForConditionalGeneration(build_config(variant, processor))
    assert module_classes(tiny) == module_classes(real)
    extra = tensor_names(tiny) - tensor_names(real)
    assert tensor_names(real) <= tensor_names(tiny)
    assert {name for name in extra if not (UNPUBLISHED.get(variant) and name.endswith(CLIP_BUFFERS))} == set()
    assert attention_kinds(tiny) == attention_kinds(real)
    for flag in TEXT_FLAGS:
        assert getattr(tiny.config.text_config, flag) == getattr(real.config.text_config, flag), flag
    for flag in set(VISION_FLAGS) - UNPUBLISHED.get(variant, set()):
        assert getattr(tiny.config.vision_config, flag) == getattr(real.config.vision_config, flag), flag
    assert bool(tiny.config.text_config.hidden_size_per_layer_input) == bool(real.config.text_config.hidden_size_per_layer_input)
    assert tiny.config.vision_config.use_clipped_linears
    assert (tiny.config.audio_config is None) == (real.config.audio_config is None)
    if real.config.audio_config is not None:
        assert tiny.config.audio_config.use_clipped_linears == real.config.audio_config.use_clipped_linears
    assert end_tokens(tiny.config, processor.tokenizer) == end_tokens(real.config)
