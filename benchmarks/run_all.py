"""Run every benchmark group, print the table and write `docs/benchmarks.md`.

`python -m benchmarks.run_all [--quick] [--only GROUP ...]`. A group that fails becomes a
row saying so, so one broken group never costs the figures of the others. With `--only`,
the groups' rows replace the rows of the same ids in the existing report.
"""

from __future__ import annotations

import argparse
import importlib
import time
import traceback
from pathlib import Path

from benchmarks.common import Row, not_measured
from benchmarks.findings import INTRO, summary
from benchmarks.report import markdown, print_rows, report_parts, run_heading

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
# Rows no group writes any more, removed from a report when it is next written.
DROPPED_IDS = frozenset({"X1"})  # X1's ceiling was not measured the way P5 is (see benchmark-history.md)
# Light groups first; the 10 GB E2B build (P7, in engine_speed) late so it does not crowd the others,
# and the real-size E2B runs (a 9.6 GB folder, many minutes) last.
GROUPS = ("long_audio", "tasks_speed", "video_prep", "memory", "chat_cache", "engine_speed", "concurrency", "startup", "json_grammar", "drafting_speed",
          "vllm_speed", "experiments", "towers", "tower_accuracy", "documents", "first_token", "real_size",
          "quantized", "compiled_towers", "compiled_decode", "llama_cpp")


def run_group(name: str, quick: bool) -> list[Row]:
    started = time.perf_counter()
    try:
        rows = importlib.import_module(f"benchmarks.{name}").run(quick=quick)
    except Exception as error:  # noqa: BLE001 - reported as a row, the other groups still run
        traceback.print_exc()
        rows = [not_measured(name, f"benchmark group {name}", None, f"{type(error).__name__}: {error}"[:200])]
    print(f"[{name}: {time.perf_counter() - started:.0f} s]", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the short run: fewer repeats and sizes (under 5 minutes on 2 CPU cores "
                        "without the real_size group, which stays at real size)")
    parser.add_argument("--only", nargs="+", choices=GROUPS,
                        help="run these groups only; their rows replace the same rows of the existing report")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = [row for name in args.only or GROUPS for row in run_group(name, args.quick)]
    elapsed = time.perf_counter() - started
    print_rows(rows)
    print(f"total {elapsed / 60:.1f} min")
    heading = run_heading(args.quick, elapsed)
    if args.only and DOC.exists():
        previous, old_rows = report_parts(DOC.read_text(encoding="utf-8"))
        rows = merged(old_rows, rows)
        heading = run_heading(args.quick, elapsed, args.only, previous)
    rows = [row for row in rows if row.id not in DROPPED_IDS]
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(markdown(rows, INTRO, summary(rows), heading), encoding="utf-8")
    print(f"wrote {DOC}")


def merged(old: list[Row], new: list[Row]) -> list[Row]:
    """The old rows with each id's rows swapped for the new ones, where the first of them stood."""
    new_ids, placed, rows = {row.id for row in new}, set(), []
    for row in old:
        if row.id not in new_ids:
            rows.append(row)
        elif row.id not in placed:
            placed.add(row.id)
            rows.extend(fresh for fresh in new if fresh.id == row.id)
    return rows + [row for row in new if row.id not in placed]


if __name__ == "__main__":
    main()
