"""The tiny variants run the same module classes and attention kinds as the real family."""

import pytest
import torch
from transformers import Gemma4ForConditionalGeneration

from reference_configs import REFERENCE_CONFIGS
from gemma_demo.tiny.model import build_config, build_processor


@pytest.fixture(scope="module")
def processor():
    return build_processor()


def module_classes(model):
    return {type(module).__name__ for module in model.modules()}


def attention_kinds(model):
    text = model.config.text_config
    return set(text.layer_types), {m for m in text.kv_sharing_modes if m}


@pytest.mark.parametrize("variant", ["e2b", "moe", "dense"])
def test_tiny_variant_uses_the_real_code_paths(processor, variant):
    with torch.device("meta"):
        real = Gemma4ForConditionalGeneration(REFERENCE_CONFIGS[variant]())
    tiny = Gemma4ForConditionalGeneration(build_config(variant, processor))
    assert module_classes(tiny) == module_classes(real)
    assert attention_kinds(tiny) == attention_kinds(real)
    real_text, tiny_text = real.config.text_config, tiny.config.text_config
    for flag in ("enable_moe_block", "attention_k_eq_v", "use_double_wide_mlp"):
        assert getattr(tiny_text, flag) == getattr(real_text, flag), flag
    assert bool(tiny_text.hidden_size_per_layer_input) == bool(real_text.hidden_size_per_layer_input)
    assert (tiny.config.audio_config is None) == (real.config.audio_config is None)
    assert tiny.config.vision_config.patch_size == real.config.vision_config.patch_size == 16
    assert tiny.config.vision_config.pooling_kernel_size == real.config.vision_config.pooling_kernel_size == 3
