"""P13e: soft tokens of the real-size towers in float32 (as the app runs them where bf16 is
slow) against the same towers in bf16.

The app may run the towers in float32 while the checkpoint is bf16 (`engine.towers`). That
must not change what the model sees beyond bf16 rounding: the float32 vision tower's soft
tokens should be at least as close to a float64 pass as the bf16 tower's are. The audio
tower has no float64 pass (see `run`), so its two dtypes are compared with each other.
Weights are the bf16 random weights of `benchmarks.towers.real_towers`, upcast, so only the
arithmetic differs. `python -m benchmarks.tower_accuracy` runs this group alone.
"""

from __future__ import annotations

import copy

import torch

from benchmarks.common import Row
from benchmarks.towers import P13_BUDGET, Towers, image_inputs, piece_inputs, real_towers
from gemma_demo.tiny.model import build_processor

BF16_UNIT = 2.0**-8  # bf16's unit roundoff: the relative error of storing one value


def relative_error(value: torch.Tensor, exact: torch.Tensor) -> float:
    """The largest difference, relative to the largest exact value."""
    return float((value.double() - exact).abs().max() / exact.abs().max())


def soft_tokens(towers: Towers, kind: str, inputs: dict) -> torch.Tensor:
    with torch.inference_mode():
        encode = towers.encode_image if kind == "image" else towers.encode_audio
        dtype = next(towers.parameters()).dtype
        return encode({name: value.to(dtype) if value.is_floating_point() else value
                       for name, value in inputs.items()}).double()


def run(quick: bool = False) -> list[Row]:
    processor = build_processor()
    bf16 = real_towers()
    upcast = copy.deepcopy(bf16).float()
    picture = image_inputs(processor, P13_BUDGET)
    exact = soft_tokens(copy.deepcopy(bf16).double(), "image", picture)
    errors = {name: relative_error(soft_tokens(towers, "image", picture), exact)
              for name, towers in (("bf16", bf16), ("float32", upcast))}
    rows = [Row(
        "P13e", f"E2B vision tower + projection, one {P13_BUDGET}-budget picture: largest soft-token error vs "
        "float64, float32 towers vs bf16 towers", f"{errors['float32']:.2e}", f"{errors['bf16']:.2e}",
        errors["float32"] / errors["bf16"], None,
        f"relative to the largest value (bf16's unit roundoff is {BF16_UNIT:.2e}); below 1, the float32 towers "
        "are the more exact, so they differ from the bf16 ones by no more than twice bf16's own error")]
    # The audio tower computes parts of its attention in float32 whatever its dtype, so it
    # has no float64 pass: the two dtypes are set against each other instead.
    piece = piece_inputs(processor)
    apart = relative_error(soft_tokens(bf16, "audio", piece), soft_tokens(upcast, "audio", piece))
    rows.append(Row("P13e", "E2B audio tower + projection, one 30 s piece: largest difference between float32 "
                    "and bf16 soft tokens", f"{apart:.2e}", note="relative to the largest float32 value; "
                    f"bf16's unit roundoff is {BF16_UNIT:.2e}"))
    return rows


if __name__ == "__main__":
    from benchmarks.report import print_rows

    print_rows(run())
