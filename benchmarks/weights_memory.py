"""The memory each real checkpoint's weights take at each `--quantize` setting, from the configs alone.

Built on the meta device from `benchmarks.reference_configs` (E2B and E4B as published; 26B-A4B
and 31B as written down there), so nothing is allocated. Layers are counted the way
`gemma_demo.engine.quantize` stores them:
- int8: one byte per weight and one bf16 scale per output row;
- int4: half a byte per weight and a bf16 scale and zero per group (32 inputs where they divide;
  `_group_size`), so 0.625 bytes per weight; a layer no layout fits stays bf16;
- the LM head, tied to the token table in bf16, gets a quantized copy of its own;
- everything else (towers, embeddings, norms) stays bf16.
The 12B (`gemma4_unified`) has no config in the repository and is left out.

`python -m benchmarks.weights_memory` prints the README's table, in GiB as GPU memory is sold.
"""

from __future__ import annotations

import torch
from transformers import Gemma4ForConditionalGeneration

GIB = 2**30
from benchmarks.reference_configs import REFERENCE_CONFIGS
from gemma_demo.engine.quantize import INT4_GROUP_SIZES, INT4_OUTPUT_TILE, decoder_linears, expert_blocks

LABELS = {"e2b": "E2B", "e4b": "E4B", "moe": "26B-A4B", "dense": "31B"}
BF16 = 2


def layer_bytes(out_features: int, in_features: int, setting: str) -> float:
    weights = out_features * in_features
    if setting == "int8":
        return weights + BF16 * out_features
    group = next((g for g in INT4_GROUP_SIZES if in_features % g == 0), None)
    if setting == "int4" and group and out_features % INT4_OUTPUT_TILE == 0:
        return weights / 2 + 2 * BF16 * out_features * in_features / group
    return BF16 * weights


def weights_bytes(name: str) -> dict[str, float]:
    with torch.device("meta"):
        model = Gemma4ForConditionalGeneration(REFERENCE_CONFIGS[name]())
    total = sum(p.numel() for p in model.parameters()) * BF16  # tied tensors counted once
    shapes = [tuple(m.weight.shape) for _, m in decoder_linears(model)]
    for _, experts in expert_blocks(model):
        shapes += [tuple(w.shape) for w in (*experts.gate_up_proj, *experts.down_proj)]
    quantizable = sum(BF16 * o * i for o, i in shapes)
    head = model.lm_head.weight
    tied = head is model.get_input_embeddings().weight
    sizes = {"off": total}
    for setting in ("int8", "int4"):
        packed = sum(layer_bytes(o, i, setting) for o, i in shapes)
        # The tied head was counted once, inside the table; its quantized copy comes on top.
        sizes[setting] = total - quantizable + packed + (BF16 * head.numel() if tied else 0)
    del model
    return sizes


def table() -> str:
    lines = ["| model | bf16 | int8 | int4 |", "|---|---|---|---|"]
    for name, label in LABELS.items():
        sizes = weights_bytes(name)
        lines.append(f"| {label} | " + " | ".join(f"{sizes[s] / GIB:.1f} GiB" for s in ("off", "int8", "int4")) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
