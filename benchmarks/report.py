"""The results table and the machine it was measured on, as Markdown for `docs/benchmarks.md`.

Ratios only mean something next to the hardware and library versions that produced
them, so every report carries both.
"""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import psutil
import torch

from benchmarks.common import Row

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


def markdown(rows: Sequence[Row], intro: str, notes: str, elapsed_s: float, quick: bool) -> str:
    mode = "`--quick`" if quick else "full"
    return "\n".join([
        "# Benchmarks",
        "",
        intro.strip(),
        "",
        f"## Results ({mode} run, {elapsed_s / 60:.1f} min)",
        "",
        table(rows),
        "",
        "## Machine",
        "",
        *machine_lines(),
        "",
        notes.strip(),
        "",
    ])
