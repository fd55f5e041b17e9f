"""Smaller text-decoder weights (`--quantize off|int8|int4`), for faster decoding and less memory.

Decoding one token reads every weight of the text decoder once, so on a CPU (and on a
small GPU) the bytes read per token set the speed. Only the text decoder's linear layers
and the LM head are quantized: they are what each token reads. The vision and audio towers
run once per picture or clip and keep their precision; so do the embedding tables, of which
a token reads one row.

Kernels are torch's own, reached through torchao where torchao reaches them:
- int4: torchao's groupwise int4 weights (asymmetric, scale and zero per group of 32 or 128
  inputs), packed for `aten._weight_int4pack_mm_for_cpu` on a CPU (`Int4OpaqueTensor`, whose
  kernel `Int4Linear` calls) and for the tinygemm kernel `aten._weight_int4pack_mm` on CUDA.
- int8 on CUDA: torchao's `Int8WeightOnlyConfig`.
- int8 on a CPU: torchao's int8 tensor runs an unfused dequantize-then-matmul in eager mode
  (0.07-0.2x the bf16 speed on one E2B linear); torch's own `aten._weight_int8pack_mm`
  (per-row scales) reads the int8 weight directly, 1.6-1.7x faster than bf16 there. `Int8Linear`
  is the few lines that call it.

For several rows at once (a prompt being read) the int8 kernel is slower than oneDNN's bf16
product, which is compute-bound there: `Int8Linear` then widens its weight to bf16 for that
call, one pass over the weight. torchao's int4 CPU tensor has no way back to bf16, so int4
layers read every prompt through the packed kernel (P19 in docs/benchmarks.md says what
that costs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gemma_demo.engine.options import QUANTIZE_CHOICES
from gemma_demo.engine.quantized_store import load_layers, save_layers

log = logging.getLogger(__name__)

# Google's QAT checkpoints were trained for Q4_0: blocks of 32 inputs. Smaller groups follow
# such weights more closely; 32 is also what the CPU kernel and llama.cpp's Q4_0 use.
INT4_GROUP_SIZES = (32, 64, 128)
INT4_OUTPUT_TILE = 16
# Below this many rows the packed kernels win; from it on, widening the weight does.
PACKED_MAX_ROWS = 8
TOWERS = ("vision_tower", "audio_tower", "embed_vision", "embed_audio")


@dataclass(frozen=True)
class Quantization:
    """What `--quantize` did to a loaded model: shown on the stats line and in `/info`."""

    setting: str
    method: str
    layers: int
    skipped: int
    bytes_before: int
    bytes_after: int

    def describe(self) -> str:
        return (f"{self.setting} ({self.method}): {self.layers} linear layers, "
                f"{self.bytes_before / 1e9:.2f} GB → {self.bytes_after / 1e9:.2f} GB")


class Int8Linear(nn.Module):
    """A linear layer with int8 weights and one bf16 scale per output row."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach()
        scale = weight.float().abs().amax(dim=1).clamp(min=1e-8) / 127
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_int8", torch.round(weight.float() / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(weight.dtype))
        self.bias = linear.bias

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        rows = input.reshape(-1, self.in_features)
        if rows.shape[0] < PACKED_MAX_ROWS:
            out = torch._weight_int8pack_mm(rows.to(self.scale.dtype).contiguous(), self.weight_int8, self.scale)
        else:
            out = F.linear(rows, self.weight_int8.to(rows.dtype) * self.scale[:, None].to(rows.dtype))
        out = out.reshape(*input.shape[:-1], self.out_features).to(input.dtype)
        return out if self.bias is None else out + self.bias


class Int4Linear(nn.Module):
    """A torchao int4 layer on the CPU whose product calls torch's int4 kernel directly.

    torchao packs the weight (`Int4OpaqueTensor`) and its linear runs the same kernel, but
    reaches it through `__torch_function__` dispatch and checks: 15-20 µs more per call on
    E2B's shapes, with about 280 int4 products per decoded token.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight
        self.out_features, self.in_features = weight.shape
        self.group_size = weight.block_size[1]
        self.register_buffer("packed", weight.qdata)
        self.register_buffer("scale_and_zero", weight.scale_and_zero)
        self.bias = linear.bias

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        rows = input.reshape(-1, self.in_features).contiguous()
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.packed, self.group_size, self.scale_and_zero)
        out = out.reshape(*input.shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias


def _group_size(linear: nn.Linear) -> int | None:
    """The int4 group size for `linear`, or None where the packed layout cannot hold it.

    Both packings need whole groups along the inputs and 16 outputs per tile.
    """
    if linear.out_features % INT4_OUTPUT_TILE:
        return None
    return next((size for size in INT4_GROUP_SIZES if linear.in_features % size == 0), None)


def _int4_config(group_size: int, device: str):
    if device == "cpu":
        from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig

        return PrototypeInt4WeightOnlyConfig(group_size=group_size, int4_choose_qparams_algorithm="tinygemm")
    from torchao.quantization import Int4WeightOnlyConfig

    return Int4WeightOnlyConfig(group_size=group_size, int4_packing_format="tile_packed_to_4d")


def decoder_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The text decoder's linear layers and the LM head: what each decoded token reads."""
    return [
        (name, module) for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not any(part in TOWERS for part in name.split("."))
    ]


def weight_bytes(module: nn.Module) -> int:
    """The bytes `module`'s weights take, counting a quantized tensor's packed data, not its shape."""
    total = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        inner = [getattr(tensor, name) for name in getattr(tensor, "tensor_data_names", ())]
        total += sum(t.numel() * t.element_size() for t in inner) if inner else tensor.numel() * tensor.element_size()
    return total


def replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put `module` where `model`'s submodule `name` was."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def quantized_linear(linear: nn.Linear, setting: str, device: str | None = None) -> nn.Module | None:
    """`linear` with `setting`'s weights (the same module where torchao swaps its weight), or
    None where no packed layout fits its shape. With `device`, the layer moves there first:
    a model too large for its GPU in bf16 is read on the CPU and quantized layer by layer."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    if device is not None and linear.weight.device.type != device:
        linear.to(device)
    device = linear.weight.device.type
    if setting == "int8" and device == "cpu":
        return Int8Linear(linear)
    if setting == "int8":
        quantize_(linear, Int8WeightOnlyConfig())
        return linear
    group = _group_size(linear)
    if group is None:
        return None
    quantize_(linear, _int4_config(group, device))
    return Int4Linear(linear) if device == "cpu" else linear


class QuantizedExperts(nn.Module):
    """A mixture-of-experts block (26B-A4B) whose experts are quantized linear layers.

    transformers keeps every expert of a layer in one 3-D tensor, which no packed layout
    holds; here each expert's two products become layers of their own, run by the same
    loop as transformers' eager experts (`Gemma4TextExperts.forward`).
    """

    def __init__(self, experts: nn.Module, setting: str, device: str | None = None):
        super().__init__()
        self.num_experts = experts.num_experts
        self.act_fn = experts.act_fn
        self.gate_up = nn.ModuleList(_expert_linear(w, setting, device) for w in experts.gate_up_proj)
        self.down = nn.ModuleList(_expert_linear(w, setting, device) for w in experts.down_proj)

    def forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                top_k_weights: torch.Tensor) -> torch.Tensor:
        final = torch.zeros_like(hidden_states)
        with torch.no_grad():
            hit = torch.bincount(top_k_index.flatten(), minlength=self.num_experts)[:self.num_experts]
            experts = hit.nonzero().flatten().tolist()
        for expert in experts:
            token_idx, top_k_pos = torch.where(top_k_index == expert)
            gate, up = self.gate_up[expert](hidden_states[token_idx]).chunk(2, dim=-1)
            out = self.down[expert](self.act_fn(gate) * up) * top_k_weights[token_idx, top_k_pos, None]
            final.index_add_(0, token_idx, out.to(final.dtype))
        return final


def _expert_linear(weight: torch.Tensor, setting: str, device: str | None) -> nn.Module:
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta", dtype=weight.dtype)
    linear.weight = nn.Parameter(weight.detach().to(device or weight.device), requires_grad=False)
    return quantized_linear(linear, setting) or linear


def expert_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """transformers' 3-D expert tensors, by module name."""
    return [(name, module) for name, module in model.named_modules()
            if isinstance(getattr(module, "gate_up_proj", None), torch.Tensor) and hasattr(module, "down_proj")]


def quantize_decoder(model: nn.Module, setting: str, store: Path | None = None,
                     device: str | None = None) -> Quantization | None:
    """Quantize `model`'s text decoder in place (its linear layers and experts); None for `off`.

    The LM head of Gemma 4 shares its weight with the token embedding: `quantize_` gives the
    head a new, quantized parameter, and the embedding keeps reading rows from the original.
    With `store`, layers kept there by an earlier load replace the bf16 ones untouched, and
    layers quantized now are kept there (`quantized_store`). With `device`, each new layer is
    made there (see `quantized_linear`).
    """
    if setting not in QUANTIZE_CHOICES:
        raise ValueError(f"--quantize takes {', '.join(QUANTIZE_CHOICES)}, not {setting!r}")
    if setting == "off":
        return None
    targets: dict[str, nn.Module] = {**dict(decoder_linears(model)), **dict(expert_blocks(model))}
    sizes = {name: weight_bytes(module) for name, module in targets.items()}  # torchao swaps weights in place
    layers = load_layers(store)
    if layers is None or not set(layers) <= set(targets):
        layers = _quantized_layers(targets, setting, device)
        if not any(_offloaded(module) for module in targets.values()):
            save_layers(store, layers)
    for name, module in layers.items():
        replace_module(model, name, module)
    before = sum(sizes.values())
    after = before + sum(weight_bytes(module) - sizes[name] for name, module in layers.items())
    count = sum(2 * module.num_experts if isinstance(module, QuantizedExperts) else 1 for module in layers.values())
    skipped = sum(1 for name in targets if name not in layers)
    cpu = (device or next(model.parameters()).device.type) == "cpu"
    method = {"int8": "torch int8 kernel, per-row scales" if cpu else "torchao int8 weights",
              "int4": "torchao int4, groups of 32-128"}[setting]
    result = Quantization(setting, method, count, skipped, before, after)
    log.info("Quantized the text decoder: %s", result.describe())
    return result


def _offloaded(module: nn.Module) -> bool:
    """Left where accelerate put it (disk, or streamed in by a hook): quantizing would load it whole."""
    return hasattr(module, "_hf_hook") or any(p.device.type == "meta" for p in module.parameters())


def _quantized_layers(targets: dict[str, nn.Module], setting: str, device: str | None) -> dict[str, nn.Module]:
    """The new layers by name; a layer no packed layout fits, or an offloaded one, is left out."""
    layers = {}
    for name, module in targets.items():
        if _offloaded(module):
            continue
        if isinstance(module, nn.Linear):
            quantized = quantized_linear(module, setting, device)
        else:
            quantized = QuantizedExperts(module, setting, device)
        if quantized is not None:
            layers[name] = quantized
    return layers
