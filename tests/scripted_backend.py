"""A backend whose answers are written in advance, in Gemma 4's real answer formats.

The tiny model writes gibberish, so the tests that check what the app does with a
meaningful answer (boxes and points to draw, a table to parse, a translation to split, a
hostile page) use this backend; everything around it is the real app. Shared by the
browser tests and the API tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from app_helpers import free_port
from gemma_demo.config import AppConfig
from gemma_demo.engine.base import Message, Stats, Update
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.registry import SMALL, ModelCapabilities
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.ui.server import launch

SCRIPTED_MODEL = "scripted"
RESUME_TIMEOUT_S = 120.0  # a ceiling: the test resumes the answer as soon as the page shows half

# The 640x480 `input/shapes.jpg` as `input/make_samples.py` draws it, in Gemma 4's answer
# format: `box_2d` is [y0, x0, y1, x1] on a 0-1000 grid.
SHAPES_SIZE = (640, 480)
SHAPES_PIXEL_BOXES = {  # label: (x0, y0, x1, y1) in pixels, from make_shapes()
    "red circle": (60, 80, 220, 240),
    "blue square": (300, 60, 460, 220),
    "green triangle": (120, 290, 280, 440),
    "star": (444, 270, 596, 415),  # the star's outer points: centre (520, 350), radius 80
}


def grid_box(box: tuple[int, int, int, int], size: tuple[int, int] = SHAPES_SIZE) -> list[int]:
    """A pixel box (x0, y0, x1, y1) as Gemma 4 writes it: [y0, x0, y1, x1] on a 0-1000 grid."""
    (x0, y0, x1, y1), (width, height) = box, size
    return [round(y0 * 1000 / height), round(x0 * 1000 / width), round(y1 * 1000 / height), round(x1 * 1000 / width)]


SHAPES_ANSWER = "```json\n[\n" + ",\n".join(
    f'  {{"box_2d": {grid_box(box)}, "label": "{label}"}}' for label, box in SHAPES_PIXEL_BOXES.items()
) + "\n]\n```"

# A generated page that tries everything a hostile page would; it reports back with
# `postMessage`, the one channel a sandboxed frame keeps to its parent.
PROBE_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign up</title>
<style>body { font-family: sans-serif; margin: 2rem; } h1 { color: #1d4ed8; }</style></head>
<body>
<h1>Plan your next trip</h1>
<p id="status">Probing the parent page…</p>
<script>
const report = {};
function attempt(name, action) {
  try { report[name] = action(); } catch (error) { report[name] = "threw " + error.name; }
}
attempt("title", () => { parent.document.title = "pwned"; return "changed"; });
attempt("body", () => { parent.document.body.innerHTML = "<h1>pwned</h1>"; return "changed"; });
attempt("cookie", () => "read: " + document.cookie);
attempt("storage", () => "read: " + window.localStorage.getItem("secret"));
attempt("navigation", () => { top.location.href = "about:blank#pwned"; return "navigated"; });
report.origin = String(self.origin);
const api = new URL("/gradio_api/info", document.baseURI).href;
report.api = api;
fetch(api, { credentials: "include" })
  .then((response) => response.text().then((text) => "read " + text.length + " characters"))
  .catch((error) => "threw " + error.name)
  .then((outcome) => {
    report.fetch = outcome;
    document.getElementById("status").textContent = "Probe finished.";
    parent.postMessage({ probe: report }, "*");
  });
</script>
</body>
</html>"""
PROBE_ANSWER = f"Here is the page.\n\n```html\n{PROBE_PAGE}\n```"

# Points at the centre of each shape, as Gemma 4 writes them: `point_2d` is [y, x] on a 0-1000 grid.
SHAPES_PIXEL_POINTS = {label: ((x0 + x1) // 2, (y0 + y1) // 2) for label, (x0, y0, x1, y1) in SHAPES_PIXEL_BOXES.items()}
POINTS_ANSWER = "```json\n[\n" + ",\n".join(
    f'  {{"point_2d": {grid_box((x, y, x, y))[:2]}, "label": "{label}"}}' for label, (x, y) in SHAPES_PIXEL_POINTS.items()
) + "\n]\n```"

TABLE_HEADERS = ["Item", "Qty", "Price"]
TABLE_ROWS = [["Coffee", "2", "3.00"], ["Croissant", "1", "2.50"]]
TABLE_ANSWER = "\n".join(
    "| " + " | ".join(row) + " |" for row in [TABLE_HEADERS, ["---"] * len(TABLE_HEADERS), *TABLE_ROWS]
)

SPOKEN = "Good morning, the meeting starts at ten."
TRANSLATED = "Bonjour, la réunion commence à dix heures."
TRANSLATION_ANSWER = f"{SPOKEN}\nFrench: {TRANSLATED}"


@dataclass
class ScriptedBackend:
    """A backend whose answers are written in advance, streamed in about `updates` pieces.

    The tiny model writes gibberish, so the tests that need a meaningful answer (boxes to
    draw, a hostile page) use this instead; everything around the backend is the real app.
    """

    name: str = SCRIPTED_MODEL
    capabilities: ModelCapabilities = SMALL
    updates: int = 40
    delay_s: float = 0.02
    prompts: list[str] = field(default_factory=list)
    settings: list[GenerationSettings] = field(default_factory=list)  # what each request asked for
    # When set, each answer stops halfway until `resume` is set: a test can then see a partial
    # answer on a loaded machine, where a browser may otherwise only paint the last one.
    resume: threading.Event | None = None

    def stream(self, messages: list[Message], settings: GenerationSettings) -> Iterator[Update]:
        prompt = prompt_text(messages)
        self.prompts.append(prompt)
        self.settings.append(settings)
        answer = self.answer_for(prompt)
        started = time.perf_counter()
        first: float | None = None
        # About what Gemma 4 would count: the picture's soft tokens and ~4 characters a token.
        prompt_tokens = settings.image_budget + len(prompt) // 4
        size = -(-len(answer) // self.updates)
        chunks = [answer[start : start + size] for start in range(0, len(answer), size)]
        for count, _ in enumerate(chunks, start=1):
            if self.resume is not None and count == len(chunks) // 2 + 1:
                self.resume.wait(RESUME_TIMEOUT_S)
            time.sleep(self.delay_s)
            first = first or time.perf_counter() - started
            stats = Stats(prompt_tokens, count, first, time.perf_counter() - started)
            yield Update(answer="".join(chunks[:count]), stats=stats)
        yield Update(answer=answer, stats=stats, done=True)

    @staticmethod
    def answer_for(prompt: str) -> str:
        if "bounding boxes" in prompt:
            return SHAPES_ANSWER
        if "Point to" in prompt:
            return POINTS_ANSWER
        if "HTML page" in prompt:
            return PROBE_ANSWER
        if "Transcribe every table" in prompt:
            return TABLE_ANSWER
        if "translate it into French" in prompt:
            return TRANSLATION_ANSWER
        return "A scripted answer."


def prompt_text(messages: list[Message]) -> str:
    parts = [message["content"] for message in messages]
    return "\n".join(
        part["text"] for content in parts for part in (content if isinstance(content, list) else [])
        if part.get("type") == "text"
    )



def serve_scripted(backend: ScriptedBackend):
    """The real app in this process over `backend` (the cache's local loader), on a free port."""
    cache = ModelCache(loaders={"local": lambda name, options: backend})
    config = AppConfig(model=SCRIPTED_MODEL, load=LoadOptions(), port=free_port())
    return launch(config, cache, prevent_thread_lock=True, quiet=True, share=False)
