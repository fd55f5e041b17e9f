"""P6: the app is ready little later than its libraries are imported.

A person running `python app.py` waits for the page; the floor for that wait is
importing gradio, transformers and torch, which no app built on them can avoid, so the
figure is the app's start against that floor. The model loads on the first request, so
it is not part of this.

`python -m benchmarks.startup` runs this group alone.
"""

from __future__ import annotations

import subprocess
import sys
import time

from benchmarks.common import Row, Target, not_measured, paired, seconds, spread
from benchmarks.server import APP, ROOT, running_app

TARGET = Target(1.3)
IMPORTS = "import gradio, transformers, torch"


def app_ready_seconds() -> float:
    with running_app("tiny") as (_, elapsed):
        return elapsed


def import_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", IMPORTS], cwd=ROOT, check=True)
    return time.perf_counter() - started


def run(quick: bool = False, reps: int = 5) -> list[Row]:
    what = "`python app.py --model tiny` until / answers 200 vs `python -c \"import gradio, transformers, torch\"`"
    if not APP.exists():
        return [not_measured("P6", what, TARGET, "app.py is missing")]
    # Each run is a fresh process anyway; a warm-up pair only rewarms the page cache.
    result = paired(app_ready_seconds, import_seconds, reps, warmup=0 if quick else 1)
    return [Row("P6", what, seconds(result.a_median), seconds(result.b_median), result.ratio, TARGET,
                spread(result))]


if __name__ == "__main__":
    from benchmarks.report import print_rows

    print_rows(run(quick="--quick" in sys.argv))
