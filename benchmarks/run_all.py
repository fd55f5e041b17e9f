"""Run every benchmark group, print the table and write `docs/benchmarks.md`.

`python -m benchmarks.run_all [--quick]`. A group that fails becomes a row saying so,
so one broken group never costs the figures of the others.
"""

from __future__ import annotations

import argparse
import importlib
import time
import traceback
from pathlib import Path

from benchmarks.common import Row, not_measured
from benchmarks.findings import INTRO, NOTES
from benchmarks.report import markdown, print_rows

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
# Light groups first; the 10 GB E2B build (P7, in engine_speed) late so it does not crowd the others.
GROUPS = ("long_audio", "tasks_speed", "video_prep", "memory", "engine_speed", "concurrency", "startup",
          "experiments")


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
    parser.add_argument("--quick", action="store_true", help="the short run (under 5 minutes on 2 CPU cores)")
    parser.add_argument("--only", nargs="+", choices=GROUPS, help="run these groups only (no report is written)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = [row for name in args.only or GROUPS for row in run_group(name, args.quick)]
    elapsed = time.perf_counter() - started
    print_rows(rows)
    print(f"total {elapsed / 60:.1f} min")
    if not args.only:
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(markdown(rows, INTRO, NOTES, elapsed, args.quick), encoding="utf-8")
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
