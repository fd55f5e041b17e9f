"""Helpers for the browser tests: a scripted backend, page locators and a streaming watcher.

Kept apart from `test_browser.py` so the tests read as what a person does on the page.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Locator, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from app_helpers import free_port
from gemma_demo.config import AppConfig
from gemma_demo.engine.base import Message, Stats, Update
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.registry import SMALL, ModelCapabilities
from gemma_demo.ui.server import launch
from gemma_demo.engine.settings import GenerationSettings

# Debian's Chromium; Playwright's own browser download is not used.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic",
]
# The fake microphone plays a file in a loop; the permission prompt is answered by itself.
FAKE_MICROPHONE_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
VIEWPORT = {"width": 1400, "height": 1000}
SCRIPTED_MODEL = "scripted"

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

    def stream(self, messages: list[Message], settings: GenerationSettings) -> Iterator[Update]:
        prompt = prompt_text(messages)
        self.prompts.append(prompt)
        answer = self.answer_for(prompt)
        started = time.perf_counter()
        first: float | None = None
        # About what Gemma 4 would count: the picture's soft tokens and ~4 characters a token.
        prompt_tokens = settings.image_budget + len(prompt) // 4
        size = -(-len(answer) // self.updates)
        chunks = [answer[start : start + size] for start in range(0, len(answer), size)]
        for count, _ in enumerate(chunks, start=1):
            time.sleep(self.delay_s)
            first = first or time.perf_counter() - started
            stats = Stats(prompt_tokens, count, first, time.perf_counter() - started)
            yield Update(answer="".join(chunks[:count]), stats=stats)
        yield Update(answer=answer, stats=stats, done=True)

    @staticmethod
    def answer_for(prompt: str) -> str:
        if "bounding boxes" in prompt:
            return SHAPES_ANSWER
        if "HTML page" in prompt:
            return PROBE_ANSWER
        return "A scripted answer."


def prompt_text(messages: list[Message]) -> str:
    parts = [message["content"] for message in messages]
    return "\n".join(
        part["text"] for content in parts for part in (content if isinstance(content, list) else [])
        if part.get("type") == "text"
    )


def serve(model: str, load: LoadOptions, cache: ModelCache):
    """The real app in this process, as `python app.py` would build it, on a free port."""
    config = AppConfig(model=model, load=load, port=free_port())
    return launch(config, cache, prevent_thread_lock=True, quiet=True, share=False)


# --- the page -------------------------------------------------------------------------

def open_tab(page: Page, name: str) -> Locator:
    """Click a tab and return its panel; Gradio renders a tab's children once it is opened."""
    page.get_by_role("tab", name=name, exact=True).click()
    panel = page.get_by_role("tabpanel").first  # nested tabs (OCR) come after the outer one
    panel.get_by_role("button").first.wait_for()
    return panel


def block_of(element: Locator) -> Locator:
    """The Gradio block (the framed component) around an element."""
    return element.locator("xpath=ancestor::div[contains(concat(' ', normalize-space(@class), ' '), ' block ')][1]")


def labelled_block(panel: Locator, label: str) -> Locator:
    """A block whose floating label (images, files, code, galleries) reads `label`."""
    name = panel.page.get_by_test_id("block-label").filter(has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))
    return panel.locator(".block").filter(has=name).first


def stats_line(panel: Locator) -> Locator:
    """The status line under every tab's answer: the tab's last Markdown block."""
    return panel.locator(".block").filter(has=panel.page.get_by_test_id("markdown-wrapper")).last


def set_max_new_tokens(page: Page, tokens: int) -> None:
    """Type a token limit into the settings accordion and fold it again."""
    accordion = page.get_by_role("button", name=re.compile("Model and generation settings"))
    accordion.click()
    field_ = page.get_by_label("Max new tokens")
    field_.fill(str(tokens))
    field_.press("Tab")
    accordion.click()
    page.get_by_label("Max new tokens").wait_for(state="hidden")


def upload(panel: Locator, path: Path) -> None:
    """Choose a file in the tab's first upload area."""
    panel.locator("input[type=file]").first.set_input_files(str(path))


# --- watching a streamed answer -------------------------------------------------------

# Samples an output block every 20 ms in the page, so no streamed value is missed however
# fast the model is: the text (a textarea's value, else the block's text) and whether the
# block's progress overlay (Gradio's status tracker) shows the event as running.
WATCH_JS = """(block, key) => {
  const read = () => { const area = block.querySelector("textarea"); return area ? area.value : block.innerText; };
  const tracker = () => block.querySelector('[data-testid="status-tracker"]');
  const errors = () => [...document.querySelectorAll(".toast-body")].map((toast) => toast.innerText);
  const state = { changes: [], started: false, finished: false, errors: [] };
  let last = read();
  const timer = setInterval(() => {
    const status = tracker(), value = read();
    const running = !!status && !status.classList.contains("hide");
    state.started ||= running;
    if (value !== last) { last = value; state.changes.push({ length: value.length, running }); }
    state.errors = errors();
    if ((state.started && !running) || state.errors.length) { state.finished = true; clearInterval(timer); }
  }, 20);
  (window.__watches ||= {})[key] = state;
}"""


@dataclass(frozen=True)
class Watch:
    """A streamed output as the page showed it, from the click to the end of the event."""

    changes: list[dict]

    @property
    def lengths_while_running(self) -> list[int]:
        return [change["length"] for change in self.changes if change["running"] and change["length"]]


def start_watching(block: Locator, key: str) -> None:
    block.evaluate(WATCH_JS, key)


def wait_for_watch(page: Page, key: str, timeout_ms: float) -> Watch:
    """Wait until the event shown by the watched block has ended; an error on the page fails at once."""
    try:
        page.wait_for_function("key => window.__watches[key].finished", arg=key, timeout=timeout_ms)
    except PlaywrightTimeoutError as error:
        state = page.evaluate("key => window.__watches[key]", key)
        raise AssertionError(f"the run shown in {key!r} did not end: {state}") from error
    state = page.evaluate("key => window.__watches[key]", key)
    assert not state["errors"], f"the page showed an error: {state['errors']}"
    return Watch(state["changes"])
