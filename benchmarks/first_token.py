"""P14: how long a CPU user waits for a caption's first token, at the real E2B size.

The first token of a 280-budget caption is set against the least time its work could take:
the FLOPs of the vision tower and the text prefill (one forward as `generate` runs it, counted
by torch's `FlopCounterMode`) at the machine's best measured matrix rate, bf16 where it is
native. Beside it, in ABBA pairs, a text-only prompt of as many tokens: the difference is what
encoding the picture costs. P14 runs again in a child process limited to AVX2
(`benchmarks.common.AVX2_ONLY`), where bf16 products are emulated and the app runs the towers
in float32.

Not part of pytest: `python -m benchmarks.first_token [--quick] [--model NAME]`; the folder is
`benchmarks.models.real_size_checkpoint` unless `--model` names another (`tiny` as a dry run).
"""

from __future__ import annotations

import argparse
import gc

from benchmarks.common import (
    AVX2_ONLY,
    ROOT_INPUT,
    Row,
    Target,
    not_measured,
    paired,
    rows_from_child,
    rows_json,
    seconds,
    spread,
)
from benchmarks.models import real_size_checkpoint
from benchmarks.towers import DTYPE_NAMES, GFLOP, RateMeter, count_flops
from gemma_demo.engine.base import Message, last_update
from gemma_demo.engine.loading import load_local_backend
from gemma_demo.engine.local import build_inputs
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.media.images import load_image
from gemma_demo.tasks.caption import CaptionPreset, caption_prompt
from gemma_demo.tasks.messages import image_messages

P14_TARGET = Target(1.5)
IMAGE = ROOT_INPUT / "chelsea.jpg"
BUDGET = 280
FILLER = "the"  # one token of the tiny tokenizer per word
FIT_TRIES = 5
P14_WHAT = f"first token of a {BUDGET}-budget caption vs the FLOP bound of its work (tower + prefill)"


def text_prompt(backend, tokens: int, settings: GenerationSettings) -> list[Message]:
    """A text-only user turn whose prompt is `tokens` long."""
    words = tokens
    for _ in range(FIT_TRIES):
        messages = [{"role": "user", "content": [{"type": "text", "text": " ".join([FILLER] * words)}]}]
        count = backend.count_prompt(messages, settings).tokens
        if count == tokens:
            return messages
        words += tokens - count
    raise RuntimeError(f"no text prompt of exactly {tokens} tokens (the last try had {count})")


def first_token_s(backend, messages: list[Message], settings: GenerationSettings) -> float:
    first = last_update(backend.stream(messages, settings)).stats.time_to_first_token
    if first is None:
        raise RuntimeError("the stream ended without a first token")
    return first


def p14_row(label: str, model: str, reps: int) -> Row:
    """A caption's first token, as `LocalBackend.stream` reports it, against the FLOP bound of its work:
    (tower + prefill FLOPs) ÷ the better of the bf16 and fp32 matrix rates, each the better of its rates
    just before and just after the first tokens were timed. Beside it, in ABBA pairs, a
    text prompt's first token of the same length: the difference is what encoding the picture costs."""
    backend = load_local_backend(model, LoadOptions())
    settings = GenerationSettings(max_new_tokens=1, image_budget=BUDGET)
    picture = image_messages(load_image(IMAGE), caption_prompt(CaptionPreset.SHORT))
    count = backend.count_prompt(picture, settings)
    text = text_prompt(backend, count.tokens, settings)
    meter = RateMeter()
    before = meter.measure()
    result = paired(lambda: first_token_s(backend, picture, settings), lambda: first_token_s(backend, text, settings),
                    reps)
    inputs = build_inputs(backend.processor, picture, settings)
    # As `generate` runs the prefill: logits for the last position only.
    flops = count_flops(lambda: backend.model(**inputs, logits_to_keep=1))
    rates = {DTYPE_NAMES[dtype]: rate for dtype, rate in meter.measure(before).items()}
    best = max(rates, key=rates.get)
    bound = flops / rates[best]
    return Row("P14", f"{label}: {P14_WHAT} ({count.tokens} tokens, {count.image_tokens} of them the picture's), "
               "in process", seconds(result.a_median),
               f"{seconds(bound)} = {flops / GFLOP:,.0f} GFLOP ÷ {rates[best] / GFLOP:.0f} GFLOP/s "
               f"({best} matrix rate; {min(rates, key=rates.get)} {min(rates.values()) / GFLOP:.0f})",
               result.a_median / bound, P14_TARGET,
               f"a text-only prompt of as many tokens: {seconds(result.b_median)} (the caption {result.ratio:.2f}× "
               f"that, {spread(result)}; ABBA, {reps} pairs after a warm-up pair)")


def p14_avx2_rows(model: str | None) -> list[Row]:
    """P14 again in a process limited to AVX2 (`AVX2_ONLY`): bf16 emulated, so the towers run in float32."""
    # Quick there always: with bf16 emulated, each text prefill takes most of a minute.
    arguments = [*(["--model", model] if model else []), "--quick"]
    return rows_from_child("first_token", arguments, AVX2_ONLY, "AVX2")


def run(quick: bool = False, model: str | None = None) -> list[Row]:
    label = "E2B real size" if model is None else model
    given, model = model, model or str(real_size_checkpoint())
    rows = []
    for ident, measure in (("P14", lambda: [p14_row(label, model, 2 if quick else 4)]),
                           ("P14 AVX2", lambda: p14_avx2_rows(given))):
        try:
            rows += measure()
        except Exception as error:  # noqa: BLE001 - a failure at real size is a row (a bug to fix), not a crash
            why = f"{type(error).__name__}: {error}"[:300]
            rows.append(not_measured(ident, f"{label}: {P14_WHAT}", P14_TARGET, why))
        gc.collect()  # the in-process model goes before the child loads its own
    return rows


if __name__ == "__main__":
    from benchmarks.report import print_rows

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", help="run on this model instead of the real-size E2B folder (e.g. tiny)")
    parser.add_argument("--json", action="store_true",
                        help="P14 in this process alone, its row as JSON (for `p14_avx2_rows`)")
    arguments = parser.parse_args()
    if arguments.json:
        label = "E2B real size" if arguments.model is None else arguments.model
        print(rows_json([p14_row(label, arguments.model or str(real_size_checkpoint()), 2 if arguments.quick else 4)]))
    else:
        print_rows(run(arguments.quick, arguments.model))
