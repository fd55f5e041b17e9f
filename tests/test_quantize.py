"""`--quantize`: which layers get smaller weights, how close they stay, and what the app says it runs.

Bounds come from the rounding itself. A weight rounded to a grid of step `s` is off by
`s/sqrt(12)` on average, so a layer's output is off by that over the weights' spread:
- int8, one scale per row: `s = 2·max|w|/254`. Over 64-256 Gaussian inputs `max|w|` is about
  2.5-3 standard deviations, so about 0.7% of the output; the bound is 1.5%.
- int4, scale and zero per group of 32: `s = (max - min)/15`, and 32 Gaussian values span about
  4 standard deviations, so about 7.7%; the bound is 12%. (Measured: 7.3-8.8%.)
The tiny model's random weights amplify any change of its weights (Gaussian noise of 7.7%
moves its logits by 85%), so the whole-model check is the int8 one, where a wrong layer would
show as an error near sqrt(2) (uncorrelated logits) rather than the measured 0.16.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import AutoModelForMultimodalLM

from gemma_demo.config import parse_app_args
from gemma_demo.engine.base import Message, last_update
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.cpu_decode import speed_up_cpu_decoding
from gemma_demo.engine.loading import resolve_source
from gemma_demo.engine import quantize as quantize_module
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.quantize import (
    Int4Linear,
    Int8Linear,
    QuantizedExperts,
    decoder_linears,
    expert_blocks,
    quantize_decoder,
    weight_bytes,
)
from gemma_demo.engine.settings import GenerationSettings

LAYER_BOUNDS = {"int8": 0.015, "int4": 0.12}
MANY_INPUTS = 64
# An expert is three rounded products (gate, up, then down on their product): sqrt(3) layers' error.
EXPERT_BOUNDS = {setting: bound * 3**0.5 for setting, bound in LAYER_BOUNDS.items()}
INT8_LOGITS_BOUND = 0.4
HELLO: list[Message] = [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}]


@pytest.fixture(scope="module")
def bf16_tiny(tiny_options):
    """The tiny model in bf16 as loaded, before the CPU decode path changes its layers."""
    folder = resolve_source("tiny", tiny_options)
    return AutoModelForMultimodalLM.from_pretrained(folder, dtype=torch.bfloat16).eval()


def quantized(model: nn.Module, setting: str) -> nn.Module:
    copied = copy.deepcopy(model)
    quantize_decoder(copied, setting)
    return copied


def test_the_flag_and_its_variable_reach_the_load_options():
    assert parse_app_args(["--quantize", "int4"], env={}).load.quantize == "int4"
    assert parse_app_args([], env={"GEMMA_DEMO_QUANTIZE": "int8"}).load.quantize == "int8"
    assert parse_app_args(["--quantize", "off"], env={"GEMMA_DEMO_QUANTIZE": "int8"}).load.quantize == "off"
    with pytest.raises(SystemExit):
        parse_app_args(["--quantize", "int3"], env={})


def test_int4_reads_googles_qat_checkpoint_of_a_known_model():
    assert resolve_source("E4B", LoadOptions(quantize="int4")) == "google/gemma-4-E4B-it-qat-q4_0-unquantized"
    assert resolve_source("google/gemma-4-31B-it", LoadOptions(quantize="int4")) == \
        "google/gemma-4-31B-it-qat-q4_0-unquantized"
    assert resolve_source("E4B", LoadOptions(quantize="int8")) == "google/gemma-4-E4B-it"
    assert resolve_source("E4B", LoadOptions()) == "google/gemma-4-E4B-it"


@pytest.mark.parametrize("setting", ["int8", "int4"])
def test_only_the_text_decoder_and_the_head_are_quantized(bf16_tiny, setting):
    model = quantized(bf16_tiny, setting)
    report = quantize_decoder(copy.deepcopy(bf16_tiny), setting)
    original = dict(bf16_tiny.named_modules())
    changed = [name for name, module in model.named_modules()
               if name in original and (type(module) is not type(original[name])
                                        or type(getattr(module, "weight", None)) is not nn.Parameter
                                        and getattr(module, "weight", None) is not None)]
    assert "lm_head" in changed
    assert any(".language_model.layers.0.mlp.down_proj" in name for name in changed)
    assert not [name for name in changed if "tower" in name or "embed_vision" in name or "embed_audio" in name]
    assert len(changed) == report.layers
    # The head got its own weight; the embedding it was tied to still reads the original rows.
    embedding = model.get_input_embeddings().weight
    assert type(embedding) is nn.Parameter
    assert torch.equal(embedding, bf16_tiny.get_input_embeddings().weight)
    assert report.bytes_after < report.bytes_before / (1.8 if setting == "int8" else 3)
    assert weight_bytes(model) < weight_bytes(bf16_tiny)


@pytest.mark.parametrize("setting", ["int8", "int4"])
def test_each_quantized_layer_stays_within_its_rounding(bf16_tiny, setting):
    model = quantized(bf16_tiny, setting)
    layers = dict(model.named_modules())
    torch.manual_seed(0)
    checked = 0
    for name, linear in decoder_linears(bf16_tiny):
        if linear.in_features < MANY_INPUTS or type(layers[name].weight if hasattr(layers[name], "weight")
                                                     else None) is nn.Parameter:
            continue  # too few inputs for the bound's average (8-wide per-layer projections), or left as it was
        for rows in (1, 12):  # one decoded token; a prompt, which the int8 layer widens for
            x = torch.randn(rows, linear.in_features, dtype=torch.bfloat16)
            with torch.no_grad():
                expected, got = linear(x).float(), layers[name](x).float()
            assert ((got - expected).norm() / expected.norm()).item() < LAYER_BOUNDS[setting], name
        checked += 1
    assert checked >= 20


def test_the_int4_layer_computes_torchaos_product_exactly():
    """`Int4Linear` skips torchao's dispatch, not its arithmetic: one row and a prompt's rows."""
    from torchao.quantization import quantize_

    torch.manual_seed(0)
    linear = nn.Linear(256, 96, bias=True, dtype=torch.bfloat16)
    quantize_(linear, quantize_module._int4_config(64, "cpu"))
    layer = Int4Linear(linear)
    for rows in (1, 12):
        x = torch.randn(2, rows, 256, dtype=torch.bfloat16)
        with torch.no_grad():
            assert torch.equal(layer(x), linear(x))


def test_int8_logits_follow_the_bf16_model(bf16_tiny):
    ids = torch.randint(10, 1000, (1, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = bf16_tiny(input_ids=ids).logits.float()
        got = quantized(bf16_tiny, "int8")(input_ids=ids).logits.float()
    assert ((got - expected).norm() / expected.norm()).item() < INT8_LOGITS_BOUND


def test_quantized_layers_keep_their_kernel_on_the_cpu_fast_path(bf16_tiny):
    """The single-row bf16 path must not take over a quantized layer (its weight reports bf16)."""
    model = quantized(bf16_tiny, "int4")
    assert speed_up_cpu_decoding(model) > 0
    fast = {name for name, m in model.named_modules() if type(m).__name__ == "_SingleRowGemvLinear"}
    quantized_names = {name for name, m in model.named_modules() if isinstance(m, Int4Linear)}
    assert "lm_head" in quantized_names
    assert not fast & quantized_names
    assert "model.language_model.layers.0.per_layer_input_gate" in fast  # left in bf16 (8 outputs)


def test_an_unknown_setting_is_refused(bf16_tiny):
    with pytest.raises(ValueError, match="--quantize takes off, int8, int4"):
        quantize_decoder(copy.deepcopy(bf16_tiny), "int3")


@pytest.mark.parametrize("setting", ["int8", "int4"])
def test_the_stats_line_says_what_runs(tiny_options, setting):
    backend = ModelCache().get("tiny", LoadOptions(tiny_root=tiny_options.tiny_root, quantize=setting))
    update = last_update(backend.stream(HELLO, GenerationSettings(sampling=False, max_new_tokens=4)))
    assert update.stats.new_tokens == 4
    assert f"({setting} weights)" in update.stats.summary()
    assert update.stats.to_json()["weights"] == setting
    assert isinstance(dict(backend.model.named_modules())["lm_head"], Int8Linear if setting == "int8" else Int4Linear)


@pytest.mark.parametrize("setting", ["int8", "int4"])
def test_mixture_of_experts_blocks_are_quantized_expert_by_expert(tiny_options, setting):
    """26B-A4B keeps its experts in 3-D tensors: most of its weights, so they must shrink too."""
    folder = resolve_source("tiny-moe", tiny_options)
    model = AutoModelForMultimodalLM.from_pretrained(folder, dtype=torch.bfloat16).eval()
    blocks = expert_blocks(model)
    assert blocks
    quantized_model = quantized(model, setting)
    torch.manual_seed(0)
    for name, experts in blocks:
        replaced = quantized_model.get_submodule(name)
        assert isinstance(replaced, QuantizedExperts)
        assert weight_bytes(replaced) < weight_bytes(experts) / (1.8 if setting == "int8" else 3)
        tokens = 12
        x = torch.randn(tokens, experts.hidden_dim, dtype=torch.bfloat16)
        # Every token to two experts, every expert used: the routing the block's loop must follow.
        top_k = torch.stack([torch.arange(tokens) % experts.num_experts,
                             (torch.arange(tokens) + 1) % experts.num_experts], dim=1)
        weights = torch.rand(tokens, 2, dtype=torch.bfloat16)
        with torch.no_grad():
            expected, got = experts(x, top_k, weights).float(), replaced(x, top_k, weights).float()
        assert ((got - expected).norm() / expected.norm()).item() < EXPERT_BOUNDS[setting], name


def test_a_second_load_maps_the_kept_layers_instead_of_quantizing(tiny_options, monkeypatch, tmp_path):
    """The layers quantized by the first load are kept on disk; the next load maps them, same answer."""
    monkeypatch.setenv("GEMMA_DEMO_QUANTIZED_CACHE", str(tmp_path))
    options = LoadOptions(tiny_root=tiny_options.tiny_root, quantize="int4")
    settings = GenerationSettings(sampling=False, max_new_tokens=8)
    first = ModelCache().get("tiny", options)
    kept = list(tmp_path.glob("*.pt"))
    assert len(kept) == 1
    answer = last_update(first.stream(HELLO, settings)).answer

    calls = []
    real = quantize_module.quantized_linear
    monkeypatch.setattr(quantize_module, "quantized_linear", lambda *a: calls.append(a) or real(*a))
    second = ModelCache().get("tiny", options)
    assert calls == []
    assert last_update(second.stream(HELLO, settings)).answer == answer
    assert isinstance(dict(second.model.named_modules())["lm_head"], Int4Linear)  # read from the kept file

    # Another setting, or a changed checkpoint, is never served from that file.
    int8 = ModelCache().get("tiny", LoadOptions(tiny_root=tiny_options.tiny_root, quantize="int8"))
    assert isinstance(dict(int8.model.named_modules())["lm_head"], Int8Linear)
    assert len(list(tmp_path.glob("*.pt"))) == 2


def test_a_damaged_kept_file_is_quantized_again(tiny_options, monkeypatch, tmp_path):
    monkeypatch.setenv("GEMMA_DEMO_QUANTIZED_CACHE", str(tmp_path))
    options = LoadOptions(tiny_root=tiny_options.tiny_root, quantize="int8")
    ModelCache().get("tiny", options)
    (kept,) = tmp_path.glob("*.pt")
    kept.write_bytes(b"not a torch file")
    backend = ModelCache().get("tiny", options)
    assert isinstance(dict(backend.model.named_modules())["lm_head"], Int8Linear)
    assert kept.stat().st_size > 1000  # written again
