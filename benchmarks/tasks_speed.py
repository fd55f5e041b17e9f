"""Figures for information: how long a model takes to load, and how each task feels with the
tiny model (first token as the caller sees it, decode tokens/s).

These have no target: they are here so that a change which makes one task slow shows
up in the report next to the others.

`python -m benchmarks.tasks_speed` runs this group alone.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator

from benchmarks.common import CACHE_DIR, REPS, ROOT_INPUT, Row, median, seconds, timed
from gemma_demo.engine.base import Stats
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.loading import load_local_backend
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.tasks import audio_question, caption, detection, html_page, ocr, transcription, video_question

NEW_TOKENS = 32

Task = Callable[[object, GenerationSettings], Iterator]


def _tasks() -> dict[str, tuple[Task, GenerationSettings]]:
    """Each task on its example input, with its own default settings but few new tokens."""
    media = {name: str(ROOT_INPUT / name) for name in ("scene.jpg", "document.png", "shapes.jpg", "sketch.png",
                                                        "speech.wav", "clip.mp4")}
    return {
        "caption": (lambda b, s: caption.caption(b, media["scene.jpg"], settings=s), caption.DEFAULT_SETTINGS),
        "ocr": (lambda b, s: ocr.ocr(b, media["document.png"], ocr.OcrMode.MARKDOWN, s), ocr.DEFAULT_SETTINGS),
        "detection": (lambda b, s: detection.detect(b, media["shapes.jpg"], "red circle, blue square", s),
                      detection.DEFAULT_SETTINGS),
        "image → html": (lambda b, s: html_page.image_to_html(b, media["sketch.png"], "", s),
                         html_page.DEFAULT_SETTINGS),
        "audio question": (lambda b, s: audio_question.ask_audio(b, media["speech.wav"], "What is said?", s),
                           audio_question.DEFAULT_SETTINGS),
        "transcription": (lambda b, s: transcription.transcribe(b, media["speech.wav"], "English", s),
                          transcription.DEFAULT_SETTINGS),
        "video question": (lambda b, s: video_question.describe_video(b, media["clip.mp4"], "What happens?",
                                                                      settings=s), video_question.DEFAULT_SETTINGS),
    }


def _stats(result) -> Stats:
    return getattr(result, "stats", None) or result.update.stats


def _once(task: Task, backend, settings: GenerationSettings) -> tuple[float | None, float | None]:
    """Seconds from the call to the first result carrying a token, and the decode tokens/s."""
    started = time.perf_counter()
    first = None
    for result in task(backend, settings):
        if first is None and _stats(result).new_tokens:
            first = time.perf_counter() - started
    return first, _stats(result).tokens_per_second


def task_rows(backend, reps: int) -> list[Row]:
    rows = []
    for name, (task, defaults) in _tasks().items():
        settings = defaults.with_changes(max_new_tokens=NEW_TOKENS)
        _once(task, backend, settings)
        runs = [_once(task, backend, settings) for _ in range(reps)]
        firsts = [f for f, _ in runs if f is not None]
        rates = [r for _, r in runs if r is not None]
        rows.append(Row("T", f"tiny, {name} (max {NEW_TOKENS} new tokens)",
                        f"{median(rates):.0f} tok/s" if rates else "—",
                        note=f"first token {seconds(median(firsts))} after the call" if firsts else "no token"))
    return rows


def load_rows(reps: int) -> list[Row]:
    from benchmarks.models import small_checkpoint

    checkpoint = small_checkpoint()
    subjects = {"tiny": ("tiny", LoadOptions(tiny_root=CACHE_DIR / "tiny")),
                f"{checkpoint.parameters / 1e6:.0f}M fp32 folder": (str(checkpoint.path), LoadOptions())}
    rows = []
    for label, (name, options) in subjects.items():
        load = timed(lambda name=name, options=options: load_local_backend(name, options))
        load()
        rows.append(Row("L", f"model load time, {label} (libraries already imported)",
                        seconds(median([load() for _ in range(reps)])), note=f"median of {reps}"))
    return rows


def run(quick: bool = False, reps: int = REPS) -> list[Row]:
    backend = load_local_backend("tiny", LoadOptions(tiny_root=CACHE_DIR / "tiny"))
    return load_rows(reps) + task_rows(backend, reps)


if __name__ == "__main__":
    from benchmarks.report import print_rows

    print_rows(run(quick="--quick" in sys.argv))
