"""The results table and the machine it was measured on, as Markdown for `docs/benchmarks.md`.

Ratios only mean something next to the hardware and library versions that produced
them, so every report carries both.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import psutil
import torch

from benchmarks.common import Row, Target

HEADER = ("id", "what", "measured", "baseline", "ratio", "target", "result", "note")
PACKAGES = ("torch", "transformers", "gradio", "gradio_client", "av", "numpy")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else ():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_lines() -> list[str]:
    gpu = (f"{torch.cuda.get_device_name(0)} ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB)"
           if torch.cuda.is_available() else "none")
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in PACKAGES)
    return [
        f"- Date: {datetime.datetime.now().astimezone().isoformat(timespec='minutes')}",
        (f"- CPU: {cpu_model()}, {psutil.cpu_count(logical=True)} logical cores "
         f"(torch uses {torch.get_num_threads()} threads); load average at the end "
         f"{', '.join(f'{x:.1f}' for x in psutil.getloadavg())}"),
        f"- RAM: {psutil.virtual_memory().total / 2**30:.1f} GiB",
        f"- GPU: {gpu}",
        f"- Python {platform.python_version()} on {platform.system()} {platform.release()}; {versions}",
        f"- OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(libgomp default)')}",
    ]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}"
        values = (row.id, row.what, row.measured, row.baseline, ratio, str(row.target or ""), row.status, row.note)
        lines.append("| " + " | ".join(_cell(v) for v in values) + " |")
    return "\n".join(lines)


def print_rows(rows: Sequence[Row]) -> None:
    print(table(rows), flush=True)


def markdown(rows: Sequence[Row], intro: str, summary: str, heading: str) -> str:
    return "\n".join([
        "# Benchmarks",
        "",
        intro.strip(),
        "",
        f"## Results ({heading})",
        "",
        summary.strip(),
        "",
        table(rows),
        "",
        "## Machine of the latest run",
        "",
        *machine_lines(),
        "",
    ])


def run_heading(quick: bool, elapsed_s: float, groups: Sequence[str] | None = None, previous: str = "") -> str:
    """When and how the rows were measured; a partial run names its groups and keeps the old heading."""
    date = datetime.date.today().isoformat()
    mode = "`--quick`" if quick else "full"
    if not groups:
        return f"{mode} run of {date}, {elapsed_s / 60:.1f} min"
    return f"{', '.join(groups)} re-measured in a {mode} run of {date}; the other rows from: {previous}"


def report_parts(text: str) -> tuple[str, list[Row]]:
    """The results heading and every row of every table in a report this module wrote."""
    heading = next((line[len("## Results ("):-1] for line in text.splitlines() if line.startswith("## Results (")), "")
    rows = []
    for line in text.splitlines():
        cells = [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) != len(HEADER) or cells[0] in ("id", "") or set(cells[0]) <= {"-"}:
            continue
        ident, what, measured, baseline, ratio, target, _, note = cells
        rows.append(Row(ident, what, measured, baseline, float(ratio) if ratio else None, _target(target), note))
    return heading, rows


def _target(text: str) -> Target | None:
    if not text:
        return None
    return Target(float(text[1:].strip().rstrip("×")), at_most=text.startswith("≤"))
