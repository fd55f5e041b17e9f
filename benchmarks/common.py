"""What every benchmark shares: paired timing, result rows, the cache folder, RSS sampling.

The benchmark machines are shared and noisy, so no figure is an absolute time: each is a
ratio of two things measured side by side in the same run, A and B interleaved (ABBA…)
so that load from other processes hits both alike, and the median of the per-pair ratios
is reported.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Self, TypeVar

import psutil

CACHE_DIR = Path(os.environ.get("GEMMA_BENCH_CACHE", Path.home() / ".cache" / "gemma_demo" / "benchmarks"))
ROOT_INPUT = Path(__file__).resolve().parent.parent / "input"
REPS = 5
# oneDNN and ATen limited to AVX2: this machine computing as a CPU without AVX-512 and without
# native bf16 does (the kind of host issue 18 was measured on, where bf16 products are emulated).
AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
RSS_SAMPLE_S = 0.002
MIB = 2**20
GB = 1e9

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    """A bound on a ratio: `ratio <= limit` (`at_most`) or `ratio >= limit`."""

    limit: float
    at_most: bool = True

    def met(self, ratio: float) -> bool:
        return ratio <= self.limit if self.at_most else ratio >= self.limit

    def __str__(self) -> str:
        return f"{'≤' if self.at_most else '≥'} {self.limit:g}×"


@dataclass(frozen=True)
class Row:
    """One line of the report; rows without a target are figures reported for information."""

    id: str
    what: str
    measured: str
    baseline: str = ""
    ratio: float | None = None
    target: Target | None = None
    note: str = ""

    @property
    def status(self) -> str:
        if self.ratio is None:
            return "n/a" if self.target else "info"
        if self.target is None:
            return "info"
        return "pass" if self.target.met(self.ratio) else "MISS"


def not_measured(id: str, what: str, target: Target | None, reason: str) -> Row:
    return Row(id=id, what=what, measured="—", target=target, note=f"not measured: {reason}")


def rows_json(rows: list[Row]) -> str:
    """Rows as one JSON line, for a parent process (`rows_from_child`)."""
    return json.dumps([asdict(row) for row in rows])


def rows_from_child(module: str, arguments: list[str], env: dict[str, str], suffix: str) -> list[Row]:
    """The rows `python -m benchmarks.<module> --json ...` prints with `env` set, their ids suffixed.

    CPU features such as `AVX2_ONLY` are read when torch starts, so they need a process of their own.
    """
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", "--json", *arguments], cwd=root,
                          env={**os.environ, **env}, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"benchmarks.{module} {' '.join(arguments)} exited {done.returncode}: {done.stderr[-300:]}")
    rows = []
    for row in json.loads(done.stdout.strip().splitlines()[-1]):
        target = Target(**row.pop("target")) if row["target"] else row.pop("target")
        rows.append(Row(**{**row, "id": f"{row['id']} {suffix}", "target": target}))
    return rows


@dataclass(frozen=True)
class Paired:
    """Seconds of A and of B, one pair per repetition."""

    a: tuple[float, ...]
    b: tuple[float, ...]

    @property
    def a_median(self) -> float:
        return statistics.median(self.a)

    @property
    def b_median(self) -> float:
        return statistics.median(self.b)

    @property
    def ratio(self) -> float:
        """Median of per-pair A/B: a pair shares the machine's load of its moment."""
        return statistics.median(x / y for x, y in zip(self.a, self.b))


def paired(a: Callable[[], float], b: Callable[[], float], reps: int = REPS, warmup: int = 1) -> Paired:
    """Run A and B alternately, ABBA order, after `warmup` unmeasured pairs.

    Each callable returns the seconds it measured, so a callable can time only part
    of what it does (a first token, a decode phase).
    """
    for _ in range(warmup):
        a(), b()
    times_a, times_b = [], []
    for rep in range(reps):
        if rep % 2:
            times_b.append(b())
            times_a.append(a())
        else:
            times_a.append(a())
            times_b.append(b())
    return Paired(tuple(times_a), tuple(times_b))


def spread(result: Paired) -> str:
    """The range of the per-pair ratios: how much the machine's load moved the figure."""
    ratios = [x / y for x, y in zip(result.a, result.b)]
    return f"pairs {min(ratios):.2f}–{max(ratios):.2f}"


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started

    return run


def in_thread(fn: Callable[[], T]) -> T:
    """Run `fn` in a fresh thread, as the engine runs `generate`, and return its result.

    On a loaded machine libgomp's spinning makes torch up to 15× slower in the main
    thread than in a fresh one (measured here, 2 cores, load ~4), so a baseline that ran
    in the main thread would flatter the engine.
    """
    box: list = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            box.append(fn())
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(error)

    worker = threading.Thread(target=target, name="bench-baseline")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    return box[0]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


class PeakRss:
    """Samples this process's RSS in a thread; `peak` is the highest seen since `start`.

    `ru_maxrss` alone cannot be reset, so a second measurement in the same process
    needs sampling.
    """

    def __init__(self, interval_s: float = RSS_SAMPLE_S):
        self._process = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.peak = 0

    def __enter__(self) -> Self:
        self.peak = self._process.memory_info().rss
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._process.memory_info().rss)


def rss() -> int:
    return psutil.Process().memory_info().rss


def seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1000:.1f} ms"


def mib(value: float) -> str:
    return f"{value / MIB:,.0f} MiB"
