"""P4: loading a model costs little more memory than its weights, and switching models leaks none.
M2: the app's peak memory idle, for a refused 300-page chat turn and for a 2-hour transcription.

Peak memory decides whether a model fits on a machine at all, so it is measured where
it happens: in a fresh process per load (a process's peak cannot be reset), with RSS
sampled every 2 ms and checked against `ru_maxrss`. Also reported: the peak memory a
32-frame video prompt adds on top of the loaded tiny model.

M2 runs `python app.py --model tiny` as a child and reads its peak RSS from the kernel
(`VmHWM` in /proc/PID/status, reset between stages through `clear_refs`), so every
allocation counts, PDFium's and PyAV's included; the requests go through `gradio_client`.

`python -m benchmarks.memory` runs P4 and M1; `python -m benchmarks.memory --app [SECONDS]` runs
M2 (minutes: 240 pieces through the tiny model for the default 2 h); `--worker ...` is the
measured child.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import CACHE_DIR, REPS, PeakRss, Row, Target, median, mib, rss

LOAD_TARGET, SWITCH_TARGET = Target(1.3), Target(1.1)
SWITCHES = 5
KIB = 1024
WORKER_TIMEOUT_S = 600
ENV = {**os.environ, "TQDM_DISABLE": "1"}


def _import_loading_code() -> None:
    """Import everything a load needs first, so that import memory is not counted as load memory."""
    import transformers.models.gemma4.modeling_gemma4  # noqa: F401
    from transformers import AutoModelForMultimodalLM, AutoProcessor  # noqa: F401

    import gemma_demo.engine.local  # noqa: F401


def touch(model) -> None:
    """Read every weight once, as the first request does.

    transformers maps float32 safetensors into memory without copying them, so right
    after loading the weights are not resident yet; reading them is what makes them so.
    """
    import torch

    with torch.inference_mode():
        for parameter in model.parameters():
            parameter.sum()


def _lifetime_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB


def worker_load(path: str) -> dict:
    from gemma_demo.engine.options import LoadOptions
    from gemma_demo.engine.loading import load_local_backend

    _import_loading_code()
    before, peak_before = rss(), _lifetime_peak()
    with PeakRss() as loading:
        backend = load_local_backend(path, LoadOptions())
    with PeakRss() as first_use:
        touch(backend.model)
    # `ru_maxrss` catches peaks between samples, but only once it has risen past any earlier one.
    lifetime = _lifetime_peak()
    peak = max(first_use.peak, loading.peak, lifetime if lifetime > peak_before else 0)
    return {"before": before, "loading": loading.peak, "peak": peak, "after": rss()}


def worker_loads(path: str, reps: str) -> dict:
    """`reps` loads, each in a child forked from this process once the libraries are imported.

    A forked child starts as fresh as a new interpreter as far as the load is concerned
    (no model, no torch threads yet) without paying seconds of imports per repetition.
    """
    _import_loading_code()
    answers = []
    for _ in range(int(reps)):
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(read_end)
            os.write(write_end, json.dumps(worker_load(path)).encode())
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as answer:
            answers.append(json.loads(answer.read()))
        os.waitpid(child, 0)
    return {"loads": answers}


def worker_switch(first: str, second: str) -> dict:
    from gemma_demo.engine.options import LoadOptions
    from gemma_demo.engine.cache import ModelCache

    _import_loading_code()
    cache = ModelCache()
    touch(cache.get(first, LoadOptions()).model)
    loaded = rss()
    after = []
    for switch in range(1, SWITCHES + 1):
        touch(cache.get(second if switch % 2 else first, LoadOptions()).model)
        after.append(rss())
    cache.clear()
    return {"first": loaded, "after": after}


def worker_video(clip: str) -> dict:
    """Peak RSS added by one video answer (32 frames, 8 tokens) over the loaded tiny model."""
    from gemma_demo.engine.base import last_update
    from gemma_demo.engine.options import LoadOptions
    from gemma_demo.engine.cache import ModelCache
    from gemma_demo.engine.settings import GenerationSettings
    from gemma_demo.tasks.video_question import describe_video

    backend = ModelCache().get("tiny", LoadOptions(tiny_root=CACHE_DIR / "tiny"))
    settings = GenerationSettings(max_new_tokens=8)
    ask = lambda: last_update(r.update for r in describe_video(backend, clip, "What happens?", settings=settings))
    ask()
    added = []
    for _ in range(REPS):
        before = rss()
        with PeakRss() as peak:
            ask()
        added.append(peak.peak - before)
    return {"added": added, "prompt_tokens": ask().stats.prompt_tokens}


def _child(*args: str) -> dict:
    """Run one worker in a fresh interpreter; its last stdout line is its JSON answer."""
    command = [sys.executable, "-m", "benchmarks.memory", "--worker", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=WORKER_TIMEOUT_S, check=False,
                          cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        raise RuntimeError(f"memory worker {args[0]} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker_switch_then_video(first: str, second: str, clip: str) -> dict:
    return {**worker_switch(first, second), **worker_video(clip)}


def run(quick: bool = False, reps: int = REPS) -> list[Row]:
    """The two children run side by side: each measures only its own process's memory."""
    from benchmarks.models import small_checkpoint
    from benchmarks.video_prep import SHORT_SECONDS, clip

    first, second = small_checkpoint(0), small_checkpoint(1)
    jobs = [("loads", str(first.path), str(reps)),
            ("switch_then_video", str(first.path), str(second.path), str(clip(SHORT_SECONDS)))]
    with ThreadPoolExecutor(len(jobs)) as pool:
        (loads, other) = list(pool.map(lambda job: _child(*job), jobs))
    return [load_row(loads["loads"], first), switch_row(other), video_row(other)]


def load_row(loads: list[dict], checkpoint) -> Row:
    peaks = [a["peak"] - a["before"] for a in loads]
    return Row("P4", f"peak RSS loading a {checkpoint.parameters / 1e6:.0f}M fp32 model and reading its weights once "
               "vs its safetensors size", mib(median(peaks)), mib(checkpoint.file_bytes),
               median([p / checkpoint.file_bytes for p in peaks]), LOAD_TARGET,
               f"{len(loads)} freshly forked processes; the load alone peaks at "
               f"{mib(median([a['loading'] - a['before'] for a in loads]))} (weights stay memory-mapped until "
               f"read); kept {mib(median([a['after'] - a['before'] for a in loads]))}")


def switch_row(switch: dict) -> Row:
    after_five = switch["after"][-1]
    return Row("P4", f"RSS after {SWITCHES} model switches (ModelCache, two such models, weights read) vs after "
               "the first load", mib(after_five), mib(switch["first"]), after_five / switch["first"], SWITCH_TARGET,
               "after each switch: " + ", ".join(mib(x) for x in switch["after"]))


def video_row(video: dict) -> Row:
    return Row("M1", "peak RSS a 32-frame 10-s 720p video prompt adds (tiny model, 8 tokens)",
               mib(median(video["added"])), note=f"{video['prompt_tokens']} prompt tokens; median of {REPS}")


WORKERS = {"loads": worker_loads, "switch_then_video": worker_switch_then_video}

BOOKS, BOOK_PAGES = 3, 100
RECORDING_S = 2 * 60 * 60
BEEP_EVERY_S = 10  # a quiet beep every 10 s, so no 20-30 s piece is silent and skipped
APP_TOKENS = 4
APP_START_TIMEOUT_S = 300.0


def books() -> list[Path]:
    """Three 100-page PDFs (pictures of one line of text each, as Pillow writes them)."""
    from PIL import Image, ImageDraw

    folder = CACHE_DIR / "books"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"book-{n}.pdf" for n in range(1, BOOKS + 1)]
    for number, path in enumerate(paths, 1):
        if not path.exists():
            pages = [Image.new("1", (612, 792), 1) for _ in range(BOOK_PAGES)]
            for page_number, page in enumerate(pages, 1):
                ImageDraw.Draw(page).text((72, 72), f"Book {number}, page {page_number}", fill=0)
            pages[0].save(path, save_all=True, append_images=pages[1:], resolution=72)
    return paths


def beeping_recording(seconds: int = RECORDING_S) -> Path:
    """16 kHz FLAC written ten seconds at a time: a 0.3 s 440 Hz beep at -26 dBFS, then silence."""
    import numpy as np
    import soundfile as sf

    path = CACHE_DIR / "audio" / f"beeps-{seconds}s.flac"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        rate = 16_000
        period = np.zeros(BEEP_EVERY_S * rate, dtype=np.float32)
        beep = np.arange(round(0.3 * rate)) / rate
        period[: len(beep)] = 0.05 * np.sin(2 * np.pi * 440 * beep)
        with sf.SoundFile(path, "w", rate, 1, format="FLAC", subtype="PCM_16") as out:
            for _ in range(seconds // BEEP_EVERY_S):
                out.write(period)
    return path


def kernel_figures(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS since start or the last reset) in bytes, as the kernel counts them."""
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {name: int(fields[name].split()[0]) * KIB for name in ("VmRSS", "VmHWM")}


def peak_of(pid: int, stage) -> tuple[int, int, float]:
    """(RSS before, peak RSS during, seconds) of `stage()`: the peak is reset to the RSS first."""
    import time

    Path(f"/proc/{pid}/clear_refs").write_text("5", encoding="ascii")
    before = kernel_figures(pid)["VmRSS"]
    started = time.perf_counter()
    stage()
    return before, kernel_figures(pid)["VmHWM"], time.perf_counter() - started


def app_peaks(seconds: int = RECORDING_S) -> dict:
    """The app's peaks: at start, after a first chat turn, for the refused turn, for the transcription."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from benchmarks.server import APP, ROOT, free_port, page_answers

    pdfs, recording = books(), beeping_recording(seconds)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    app = subprocess.Popen([sys.executable, str(APP), "--model", "tiny", "--port", str(port)], cwd=ROOT, env=ENV,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(app, url, page_answers)
        started = kernel_figures(app.pid)
        client = Client(url, verbose=False)
        short = {"max_new_tokens": APP_TOKENS, "sampling": "off"}
        chat = lambda files: client.predict({"text": "Summarise.", "files": [handle_file(f) for f in files]}, [],
                                           api_name="/chat", **short)
        warm = peak_of(app.pid, lambda: chat([]))
        refusals: list[str] = []

        def refused() -> None:
            try:
                chat(pdfs)
            except AppError as error:
                refusals.append(str(error))

        turn = peak_of(app.pid, refused)
        answers = []
        audio = peak_of(app.pid, lambda: answers.append(
            client.predict(handle_file(str(recording)), "English", api_name="/transcribe", **short)))
        after = peak_of(app.pid, lambda: chat([]))
    finally:
        app.terminate()
        app.wait(WORKER_TIMEOUT_S)
    return {"started": started, "warm": warm, "turn": turn, "refusal": refusals, "audio": audio,
            "cues": answers[0][1].count(" --> ") if answers else 0, "after": after, "seconds": seconds,
            "pdf_bytes": [p.stat().st_size for p in pdfs], "recording_bytes": recording.stat().st_size}


def _wait_for(app: subprocess.Popen, url: str, answers) -> None:
    import time

    deadline = time.monotonic() + APP_START_TIMEOUT_S
    while not answers(url):
        if app.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"app.py did not answer on {url}")
        time.sleep(0.2)


def app_rows(peaks: dict) -> list[Row]:
    started, (_, warm_peak, _), (turn_before, turn_peak, turn_s) = peaks["started"], peaks["warm"], peaks["turn"]
    audio_before, audio_peak, audio_s = peaks["audio"]
    refusal = (peaks["refusal"] or ["(not refused)"])[0]
    return [
        Row("M2", "app.py --model tiny: RSS once serving, peak over its first chat turn (loads the model)",
            mib(warm_peak), mib(started["VmHWM"]), note=f"RSS idle after it: {mib(peaks['turn'][0])}"),
        Row("M2", f"peak RSS of a refused chat turn with {BOOKS} PDFs of {BOOK_PAGES} pages "
            f"({', '.join(f'{b // 1024} KB' for b in peaks['pdf_bytes'])})", mib(turn_peak), mib(turn_before),
            turn_peak / turn_before, note=f"{turn_s:.1f} s with the uploads; refusal: {refusal[:160]}"),
        Row("M2", f"peak RSS transcribing {peaks['seconds'] / 60:g} min of 16 kHz FLAC "
            f"({peaks['recording_bytes'] // 1024} KB) through /transcribe, {APP_TOKENS} tokens a piece",
            mib(audio_peak), mib(audio_before), audio_peak / audio_before,
            note=f"{peaks['cues']} pieces in {audio_s:.0f} s; the next chat turn's peak {mib(peaks['after'][1])}"),
    ]

if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        print(json.dumps(WORKERS[sys.argv[2]](*sys.argv[3:])), flush=True)
    elif sys.argv[1:2] == ["--app"]:
        from benchmarks.report import print_rows

        figures = app_peaks(*(int(seconds) for seconds in sys.argv[2:3]))
        print(json.dumps(figures), flush=True)
        print_rows(app_rows(figures))
    else:
        from benchmarks.report import print_rows

        print_rows(run(quick="--quick" in sys.argv))
