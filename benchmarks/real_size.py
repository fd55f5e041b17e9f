"""P15 and a smoke run at the real E2B size: what a person with only a CPU gets.

Every other group runs small models. Here a folder with the published E2B architecture
(random bf16 weights, about 9.6 GB, the tiny tokenizer's ids; built once by
`benchmarks.models.real_size_checkpoint`) goes through what a person would run:
- the CLI, a fresh process per task (a 280-budget caption, a detection, a 40 s
  transcription, a 4-frame video question): load, first token, a few more tokens, and the
  process's peak RSS. A task that raises here is a bug; it shows as a failed row;
- P15, through the app: two captions sent together. Batching pays if the slower of the two
  first tokens comes before two lone captions, one after the other, would have finished.

P14, a caption's first token at the same size, is `benchmarks.first_token`.

Not part of pytest: at real size this takes many minutes. `python -m benchmarks.real_size
[--quick] [--model NAME]`; `--model tiny` runs the same code on the tiny model, as a dry run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import psutil
import soundfile as sf

from benchmarks.common import (
    CACHE_DIR,
    GB,
    ROOT_INPUT,
    Row,
    Target,
    median,
    not_measured,
    seconds,
)
from benchmarks.findings import FAILED
from benchmarks.models import real_size_checkpoint
from benchmarks.server import ROOT, running_app

P15_TARGET = Target(1.0)
IMAGE, CLIP, SPEECH = ROOT_INPUT / "chelsea.jpg", ROOT_INPUT / "clip.mp4", ROOT_INPUT / "speech.wav"
BUDGET = 280
SPEECH_SECONDS = 40
VIDEO_FRAMES = 4
SMOKE_TOKENS = 24  # load + first token + a little decoding
APP_TOKENS = 8
RSS_POLL_S = 0.05
CLI_TIMEOUT_S = 1800.0  # the slowest real-size task seen took 402 s (a 1120-budget caption, issue 18)
FIRST_TOKEN = re.compile(r"first token ([\d.]+) s")
# Progress bars would fill an unread pipe of the app and stall it.
QUIET = {"TQDM_DISABLE": "1"}
P15_WHAT = "two captions sent together through the app, the slower first token vs twice a lone caption's"


@dataclass(frozen=True)
class CliRun:
    """One CLI process: the JSON line it printed, or why it failed."""

    line: dict
    wall_s: float
    peak_rss: int
    error: str = ""


def speech_clip() -> str:
    """The 10 s speech sample repeated to 40 s: two pieces for the transcriber."""
    path = CACHE_DIR / "audio" / f"speech-{SPEECH_SECONDS}s.wav"
    if not path.exists():
        samples, rate = sf.read(SPEECH, dtype="float32")
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.tile(samples, -(-SPEECH_SECONDS * rate // len(samples)))[: SPEECH_SECONDS * rate], rate)
    return str(path)


def cli_cases() -> dict[str, list[str]]:
    """Label -> the CLI's arguments after `python -m gemma_demo`."""
    return {
        f"caption, {BUDGET} budget": ["caption", str(IMAGE), "--image-budget", str(BUDGET)],
        "detection": ["detect", str(IMAGE), "--objects", "cat"],
        f"transcription of {SPEECH_SECONDS} s of speech": ["transcribe", speech_clip()],
        f"video question, {VIDEO_FRAMES} frames": ["video", str(CLIP), "--frames", str(VIDEO_FRAMES)],
    }


def run_cli(arguments: list[str]) -> CliRun:
    """`python -m gemma_demo ARGUMENTS` in a fresh process, its RSS sampled until it exits."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "gemma_demo", *arguments], cwd=ROOT, stdout=out,
                                   stderr=err, text=True, env={**os.environ, **QUIET})
        peak = peak_rss_until_exit(process, started + CLI_TIMEOUT_S)
        wall = time.perf_counter() - started
        out.seek(0)
        lines = [json.loads(text) for text in out.read().splitlines() if text.startswith("{")]
        err.seek(0)
        stderr = err.read().strip()
    line = lines[-1] if lines else {}
    if wall > CLI_TIMEOUT_S:
        return CliRun(line, wall, peak, f"stopped after {CLI_TIMEOUT_S:g} s without an answer")
    error = line.get("error", "") or ("" if process.returncode == 0 else f"exit {process.returncode}: {stderr[-300:]}")
    return CliRun(line, wall, peak, error)


def peak_rss_until_exit(process: subprocess.Popen, deadline: float) -> int:
    """The highest RSS of `process` until it exits, or until `deadline` (then it is killed)."""
    watched, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        if time.perf_counter() > deadline:
            process.kill()
            process.wait()
            break
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(RSS_POLL_S)
    return peak


def smoke_rows(label: str, model: str) -> list[Row]:
    rows = []
    for task, arguments in cli_cases().items():
        what = f"{label}: {task} through the CLI (fresh process: load, first token, up to {SMOKE_TOKENS} tokens)"
        run = run_cli([*arguments, "--model", model, "--max-new-tokens", str(SMOKE_TOKENS)])
        stats = run.line.get("stats", {})
        error = run.error or ("" if stats.get("time_to_first_token") is not None else "no first token")
        if error:
            rows.append(Row("S", what, FAILED, note=error[:300].replace("\n", " ")))
            continue
        rate = stats.get("tokens_per_second")
        rows.append(Row("S", what, f"first token {seconds(stats['time_to_first_token'])}",
                        note=f"{f'{rate:.2f} tok/s' if rate else 'no decode rate'}; "
                             f"peak RSS {run.peak_rss / GB:.1f} GB; wall {seconds(run.wall_s)}; "
                             f"{stats['prompt_tokens']} prompt tokens, {stats['new_tokens']} new"))
    return rows


@contextmanager
def quiet_progress() -> Iterator[None]:
    """`QUIET` in the environment while a child starts (it copies the environment), then as before."""
    saved = {name: os.environ.get(name) for name in QUIET}
    os.environ.update(QUIET)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value


def ask_caption(client, model: str) -> float:
    """A caption through `/caption`; its first-token time as the stats line reports it."""
    from gradio_client import handle_file

    _text, _reasoning, stats = client.predict(
        image=handle_file(str(IMAGE)), style="short", question="", model=model, max_new_tokens=APP_TOKENS,
        thinking="off", sampling="off", image_budget=BUDGET, api_name="/caption")
    found = FIRST_TOKEN.search(stats or "")
    if found is None:
        raise RuntimeError(f"no first-token time in the stats line {stats!r}")
    return float(found.group(1))


def p15_row(label: str, model: str, rounds: int) -> Row:
    """A lone caption, then two sent together, `rounds` times, after a caption that loads the model."""
    from gradio_client import Client

    with quiet_progress(), running_app(model) as (url, _):
        clients = [Client(url, verbose=False, analytics_enabled=False) for _ in range(2)]
        ask_caption(clients[0], model)
        lone, slower = [], []
        with ThreadPoolExecutor(len(clients)) as pool:
            for _ in range(rounds):
                lone.append(ask_caption(clients[0], model))
                slower.append(max(pool.map(lambda client: ask_caption(client, model), clients)))
    ratios = [s / (2 * one) for s, one in zip(slower, lone)]
    return Row("P15", f"{label}: {P15_WHAT}", seconds(median(slower)), f"2 × {seconds(median(lone))}",
               median(ratios), P15_TARGET,
               f"{rounds} round(s) after a first caption that loaded the model; first tokens from the stats "
               f"line (from the call into the engine); per round {', '.join(f'{r:.2f}' for r in ratios)}")


def run(quick: bool = False, model: str | None = None) -> list[Row]:
    """The real-size E2B folder (built on first use, several minutes) unless `model` names another."""
    label = "E2B real size" if model is None else model
    model = model or str(real_size_checkpoint())
    rows = smoke_rows(label, model)
    try:
        rows.append(p15_row(label, model, 2 if quick else 3))
    except Exception as error:  # noqa: BLE001 - a failure at real size is a row (a bug to fix), not a crash
        rows.append(not_measured("P15", f"{label}: {P15_WHAT}", P15_TARGET, f"{type(error).__name__}: {error}"[:300]))
    return rows


if __name__ == "__main__":
    from benchmarks.report import print_rows

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", help="run on this model instead of the real-size E2B folder (e.g. tiny)")
    arguments = parser.parse_args()
    print_rows(run(arguments.quick, arguments.model))
