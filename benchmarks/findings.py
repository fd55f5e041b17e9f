"""The prose around the table in `docs/benchmarks.md`: how it is measured, and what the run found.

Kept beside the code that measures, so the explanation changes with the method. Only the
method is written here by hand; every figure in the generated file comes from the rows of
the run that wrote it (`summary`). Earlier runs and the reasons behind the fixes are in the
hand-written, dated `docs/benchmark-history.md`.
"""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.common import Row

# What a smoke row (id S) measures when its task raised: a bug, listed in the summary.
FAILED = "failed"

INTRO = """
How fast and lean Gemma 4 Studio is, each figure measured against what it cannot avoid.
This file is written by `python -m benchmarks.run_all [--quick]`; one group alone runs
with `python -m benchmarks.run_all --only <group> [--quick]`, which re-measures that
group's rows and keeps the others from the previous report (each row says when it was
measured). Earlier runs, what they missed and what was done about it:
[benchmark-history.md](benchmark-history.md).

**Method.** The machines these run on are shared, so every figure with a target is a
*ratio* of two things measured side by side in one run: A and B alternate (ABBA order,
after a warm-up pair unless noted) and the ratio is the median of the per-pair ratios.
"pairs x–y" in a note is the range of those ratios: how much the machine's load moved
the figure. Memory figures are medians over freshly forked processes.

- Models have random weights in the real Gemma 4 classes (speed and memory do not depend
  on the values): the tiny test model (`--model tiny`); a 133M-parameter model with
  E2B's layout (per-layer embeddings, KV sharing, double-wide MLP; hidden 768, 14 layers,
  intermediate 3072, the tiny tokenizer) in float32; and the real E2B / E4B architectures
  of `benchmarks/reference_configs.py` in bf16.
- The engine is always measured through `LocalBackend.stream`. It has no setting for a
  minimum length, so a wrapper in `benchmarks/engine_speed.py` adds
  `min_new_tokens = max_new_tokens` to its `generate` call, and the baseline does the same.
- Baselines call `generate` in a fresh thread, as the engine does.
- `benchmarks/__init__.py` sets `OMP_WAIT_POLICY=PASSIVE` for every process the
  benchmarks run, the app included; X3 measures that choice against libgomp's default.
- P6 starts `python app.py --model tiny` and, launched the same way, a bare Gradio app
  (one `gr.Blocks` with a textbox), each until its page answers 200.
- `--quick`: P7 builds the E2B text decoder only and times a few decode tokens; P5 uses
  the tiny model only; P3's transformers comparison and P6 skip the warm-up pair; the
  experiments (X rows) are left out; P13 times the 280 budget and the audio piece only,
  one pass each after a warm-up (the other dtype without); P14 and P15 take fewer pairs and
  rounds, but still run at real size. P3 uses the 10-minute clip in both modes.
- P13 counts one tower pass with torch's `FlopCounterMode` (plus CPU flash attention, which
  it does not count) and divides by the float32 rate of a 2048² `F.linear`, the better of
  the rates just before and just after the tower's timing. The towers are the real E2B
  classes with random bf16 weights, timed in the dtype the app picks
  (`towers_in_float32_if_faster`). P14 (`first_token` group), P15 and the S rows
  (`real_size` group) run late, are slow and are not in pytest: the published E2B
  architecture saved as a 9.6 GB bf16 folder with the tiny tokenizer's ids, run in process
  (P14), through the CLI (a fresh process per task) and through the app (P15). P14 sets a
  caption's first token against the FLOPs of its tower and prefill (one forward, counted as
  P13 counts) at the better of the bf16 and float32 rates of a 2048² `F.linear`.
- Rows marked "AVX2" (P13 and P14) run in a child process with oneDNN and ATen limited to
  AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`): this machine computing as a CPU
  without AVX-512 and native bf16 does, where bf16 products are emulated and the app runs
  the towers in float32. P13e compares the float32 towers' soft tokens with the bf16 ones.
- `torch.compile`, measured where the issue planned it: P13c runs the 280-budget picture
  through the vision tower with its layers compiled (`--compile`) and eager, in ABBA pairs
  in one process, after two fresh processes that time the first compiled call with
  inductor's cache empty and then kept. P16c decodes the int4 real-size E2B with
  transformers' static cache and compiled forward against the app's eager decode.
- Generated models, clips and audio are cached in `~/.cache/gemma_demo/benchmarks`
  (`GEMMA_BENCH_CACHE`), built on the first run.

Rows: P rows have targets; L, T, M1, S and the lettered P13 rows are figures for
information; X rows are experiments (full run only).
"""


def summary(rows: Sequence[Row]) -> str:
    """What the table says, in words, quoting only the rows' own figures."""
    judged = [row for row in rows if row.target is not None]
    missed = [row for row in judged if row.status == "MISS"]
    unmeasured = [row for row in judged if row.status == "n/a"]
    lines = [f"**This table.** {len(judged)} rows have a target: "
             f"{sum(row.status == 'pass' for row in judged)} pass, {len(missed)} miss"
             + (f", {len(unmeasured)} could not be measured." if unmeasured else ".")]
    for row in missed:
        lines.append(f"- {row.id} missed: {row.what} measured {row.ratio:.2f}× against {row.target} "
                     f"({row.note or 'no note'}).")
    for row in unmeasured:
        lines.append(f"- {row.id} was not measured: {row.note}.")
    for row in rows:
        if row.measured == FAILED:
            lines.append(f"- {row.id} failed (a bug): {row.what}: {row.note}.")
    return "\n".join(lines)
