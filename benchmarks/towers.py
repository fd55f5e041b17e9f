"""P13, P13b: the vision and audio towers against what this CPU can compute.

On a CPU a picture or a clip waits for its encoder before the first token, so the towers'
time is set against what the machine computes: the FLOPs of one pass (torch's
`FlopCounterMode`, taught CPU flash attention, which it does not count) divided by its
float32 matrix-product rate, measured around each timing. (Where the CPU has native bf16,
a bf16 tower can beat that bound; each row's note also sets it against its own dtype's
rate.) The towers are the real
E2B classes built from the published config with random bf16 weights (speed does not
depend on the values), fed `input/chelsea.jpg` and a 30 s speech piece through the real
processor, and timed in the dtype the app runs them in (`towers_in_float32_if_faster`
decides), with the other dtype for information. The tiny model's towers, loaded from its
folder, get the same figures for information. The real towers are timed a second time in a
child process with oneDNN and ATen limited to AVX2 (rows "… AVX2"): there bf16 products are
emulated, as on the AVX2 host the issue was measured on, and the app's float32 choice shows.

`python -m benchmarks.towers [--quick]` runs this group alone.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count
from transformers import (
    Gemma4AudioModel,
    Gemma4ForConditionalGeneration,
    Gemma4VisionModel,
)
from transformers.models.gemma4.modeling_gemma4 import Gemma4MultimodalEmbedder

from benchmarks.common import (
    AVX2_ONLY,
    ROOT_INPUT,
    Row,
    Target,
    in_thread,
    median,
    rows_from_child,
    rows_json,
    seconds,
    timed,
)
from benchmarks.models import random_model
from benchmarks.reference_configs import REFERENCE_CONFIGS
from gemma_demo.engine.towers import towers_in_float32_if_faster
from gemma_demo.media.timing import SAMPLE_RATE
from gemma_demo.tiny.model import build_processor, ensure_tiny_model

TARGET = Target(2.0)
BUDGETS = (70, 140, 280, 560, 1120)
P13_BUDGET = 280
PIECE_SECONDS = 30
IMAGE, SPEECH = ROOT_INPUT / "chelsea.jpg", ROOT_INPUT / "speech.wav"
MATMUL_SIZE, MATMUL_REPEATS = 2048, 5
REPS = 3
GFLOP = 1e9
DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16"}


def _attention_flops(q, k, v, *args, out_shape=None, **kwargs) -> int:
    """`sdpa_flop_count` (of shapes) with grouped keys and values, the text decoder's GQA, counted per query head."""
    return sdpa_flop_count(q, (k[0], q[1], *k[2:]), (v[0], q[1], *v[2:]))


# CPU SDPA runs this kernel, which FlopCounterMode has no formula for (torch 2.11 to 2.14).
CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops}


class Towers(nn.Module):
    """The encoders and their projections, under the names the app's dtype choice looks for."""

    def __init__(self, vision_tower: nn.Module, audio_tower: nn.Module, embed_vision: nn.Module,
                 embed_audio: nn.Module):
        super().__init__()
        self.vision_tower, self.audio_tower = vision_tower, audio_tower
        self.embed_vision, self.embed_audio = embed_vision, embed_audio

    def encode_image(self, inputs: dict) -> torch.Tensor:
        """What `Gemma4Model.get_image_features` computes: the tower, then the projection."""
        hidden = self.vision_tower(pixel_values=inputs["pixel_values"],
                                   pixel_position_ids=inputs["image_position_ids"]).last_hidden_state
        return self.embed_vision(inputs_embeds=hidden)

    def encode_audio(self, inputs: dict) -> torch.Tensor:
        hidden = self.audio_tower(inputs["input_features"], inputs["input_features_mask"]).last_hidden_state
        return self.embed_audio(inputs_embeds=hidden)


@dataclass(frozen=True)
class Subject:
    """One model's towers in the app's dtype and in the other one."""

    label: str
    app: Towers
    other: Towers


def dtype_of(towers: Towers) -> torch.dtype:
    return next(towers.vision_tower.parameters()).dtype


def real_towers() -> Towers:
    config = REFERENCE_CONFIGS["e2b"]()
    vision, audio, text = config.vision_config, config.audio_config, config.text_config
    return random_model(lambda: Towers(Gemma4VisionModel(vision), Gemma4AudioModel(audio),
                                       Gemma4MultimodalEmbedder(vision, text), Gemma4MultimodalEmbedder(audio, text)),
                        "cpu", torch.bfloat16)


def tiny_towers() -> Towers:
    """The tiny checkpoint's towers, loaded as the app loads the folder (its own dtype, float32)."""
    inner = Gemma4ForConditionalGeneration.from_pretrained(ensure_tiny_model(), dtype="auto").model
    return Towers(inner.vision_tower, inner.audio_tower, inner.embed_vision, inner.embed_audio).eval()


def as_the_app_runs_them(label: str, towers: Towers) -> Subject:
    """`towers` in the dtype the app would pick here, and a copy in the other one."""
    app = copy.deepcopy(towers)
    towers_in_float32_if_faster(app)
    other = torch.bfloat16 if dtype_of(app) == torch.float32 else torch.float32
    return Subject(label, app, towers.to(other))


def matmul_rate(dtype: torch.dtype) -> float:
    """FLOP/s of the best of a few square `F.linear` products, in a fresh thread as the engine computes."""
    inputs = torch.randn(MATMUL_SIZE, MATMUL_SIZE, dtype=dtype)
    weight = torch.randn(MATMUL_SIZE, MATMUL_SIZE, dtype=dtype)
    product = timed(lambda: F.linear(inputs, weight))
    best = min(in_thread(product) for _ in range(MATMUL_REPEATS + 1))
    return 2 * MATMUL_SIZE**3 / best


def image_inputs(processor, budget: int) -> dict:
    picture = Image.open(IMAGE).convert("RGB")
    return dict(processor.image_processor(images=[picture], max_soft_tokens=budget, return_tensors="pt"))


def piece_inputs(processor) -> dict:
    """A 30 s piece of speech (the sample repeated), as the feature extractor gives it to the audio tower."""
    samples, rate = sf.read(SPEECH, dtype="float32")
    assert rate == SAMPLE_RATE, rate
    samples = np.tile(samples, -(-PIECE_SECONDS * rate // len(samples)))[: PIECE_SECONDS * rate]
    return dict(processor.feature_extractor([samples], sampling_rate=rate, return_tensors="pt"))


def count_flops(run: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION)
    with torch.inference_mode(), counter:
        run()
    return counter.get_total_flops()


def pass_seconds(run: Callable[[], object], reps: int, warmup: bool = True) -> float:
    """Median seconds of `reps` passes, each in a fresh thread as the engine runs them."""

    def without_autograd() -> None:
        # Inside the thread: inference mode is per thread, and without it autograd keeps every
        # activation (a 560-budget pass then took over 10 GB) and the pass runs slower.
        with torch.inference_mode():
            run()

    def one() -> float:
        return in_thread(timed(without_autograd))

    if warmup:
        one()
    return median([one() for _ in range(reps)])


class RateMeter:
    """The matmul rates, measured around each tower's timing; `best` holds the highest of the run.

    Other processes share the cores and move a 0.1 s product's rate by up to 2× within
    seconds, so a tower is set against the better of the rates just before and just after
    it: the machine's limit at that moment.
    """

    def __init__(self):
        self.best = dict.fromkeys(DTYPE_NAMES, 0.0)

    def measure(self, previous: dict[torch.dtype, float] | None = None) -> dict[torch.dtype, float]:
        """The rates now, each raised to `previous`'s where that was higher."""
        rates = {dtype: max(matmul_rate(dtype), (previous or {}).get(dtype, 0.0)) for dtype in DTYPE_NAMES}
        self.best = {dtype: max(rate, self.best[dtype]) for dtype, rate in rates.items()}
        return rates


def tower_rows(subject: Subject, meter: RateMeter, ids: tuple[str, str], what: str,
               encode: Callable[[Towers, dict], object], inputs: dict, reps: int, other_too: bool,
               target: Target | None) -> list[Row]:
    """One tower and input: its FLOPs, its time in the app's dtype against the fp32 bound, the other dtype.

    `ids` name the first row and the other dtype's.
    """
    # FLOPs depend on shapes only, so the counted pass is also the app dtype's warm-up.
    flops = count_flops(lambda: encode(subject.app, inputs))
    app_dtype = dtype_of(subject.app)
    before = meter.measure()
    app_s = pass_seconds(lambda: encode(subject.app, inputs), reps, warmup=False)
    rates = meter.measure(before)
    bound = flops / rates[torch.float32]
    own_bound = flops / rates[app_dtype]
    name = DTYPE_NAMES[app_dtype]
    rows = [Row(ids[0], f"{subject.label} {what}, {name} as the app runs it: time vs its FLOPs at the fp32 matmul rate",
                seconds(app_s),
                f"{seconds(bound)} = {flops / GFLOP:,.1f} GFLOP ÷ {rates[torch.float32] / GFLOP:.0f} GFLOP/s",
                app_s / bound, target,
                f"median of {reps} after a warm-up; against the {name} rate "
                f"({rates[app_dtype] / GFLOP:.0f} GFLOP/s) {app_s / own_bound:.2f}×")]
    if other_too:
        other = DTYPE_NAMES[dtype_of(subject.other)]
        other_s = pass_seconds(lambda: encode(subject.other, inputs), reps, warmup=reps > 1)
        rows.append(Row(ids[1], f"{subject.label} {what}: {other} vs {name} (the app's)", seconds(other_s),
                        seconds(app_s), other_s / app_s, None,
                        f"median of {reps}" + (" after a warm-up" if reps > 1 else ", no warm-up")))
    return rows


def subject_rows(subject: Subject, meter: RateMeter, processor, budgets: tuple[int, ...], reps: int,
                 targets: bool) -> list[Row]:
    """The towers' rows; with `targets`, the 280-budget picture and the piece are P13 and P13b, else P13t."""
    rows = []
    for budget in budgets:
        inputs = image_inputs(processor, budget)
        patches = int((inputs["image_position_ids"] != -1).all(-1).sum())
        judged = budget == P13_BUDGET and targets
        ids = ("P13" if judged else "P13v", "P13d") if targets else ("P13t", "P13t")
        what = f"vision tower + projection, one {budget}-budget picture ({patches:,} patches)"
        rows += tower_rows(subject, meter, ids, what, Towers.encode_image, inputs, reps, budget == P13_BUDGET,
                           TARGET if judged else None)
    ids = ("P13b", "P13d") if targets else ("P13t", "P13t")
    what = f"audio tower + projection, one {PIECE_SECONDS} s piece"
    rows += tower_rows(subject, meter, ids, what, Towers.encode_audio, piece_inputs(processor), reps, True,
                       TARGET if targets else None)
    return rows


def rate_rows(meter: RateMeter) -> list[Row]:
    return [Row("P13r", f"this CPU's matmul rate, {DTYPE_NAMES[dtype]} ({MATMUL_SIZE}² F.linear)",
                f"{rate / GFLOP:.0f} GFLOP/s",
                note=f"the best of {MATMUL_REPEATS} products, before and after each tower, over the run; "
                     f"{torch.get_num_threads()} torch threads")
            for dtype, rate in meter.best.items()]


def run(quick: bool = False, others: bool = True) -> list[Row]:
    """Real E2B towers (P13, P13b; every budget in a full run), then, with `others`, the tiny
    model's for information and the real ones again on this CPU limited to AVX2 (`AVX2_ONLY`)."""
    meter, processor = RateMeter(), build_processor()
    budgets, reps = ((P13_BUDGET,), 1) if quick else (BUDGETS, REPS)
    rows = subject_rows(as_the_app_runs_them("E2B", real_towers()), meter, processor, budgets, reps, targets=True)
    if not others:
        return rate_rows(meter) + rows
    tiny = as_the_app_runs_them("tiny", tiny_towers())
    rows += subject_rows(tiny, meter, processor, (P13_BUDGET,), reps, targets=False)
    # Quick there always: an emulated bf16 pass of a 1120-budget picture alone takes minutes.
    avx2 = rows_from_child("towers", ["--quick"], AVX2_ONLY, "AVX2")
    return rate_rows(meter) + rows + avx2


if __name__ == "__main__":
    from benchmarks.report import print_rows

    child = "--json" in sys.argv
    found = run(quick="--quick" in sys.argv, others=not child)
    if child:
        print(rows_json(found))
    else:
        print_rows(found)
