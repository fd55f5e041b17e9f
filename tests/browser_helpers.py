"""Helpers for the browser tests: the app, page locators and a streaming watcher.

Kept apart from `test_browser.py` so the tests read as what a person does on the page.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Locator, Page, Route
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from app_helpers import free_port
from chat_script import SlowQueuedBackend
from gemma_demo.config import AppConfig
from gemma_demo.engine.options import LoadOptions
from gemma_demo.tiny.tokenizer import BYTE_TOKENS
from gemma_demo.engine.cache import ModelCache
from gemma_demo.ui.server import launch

# Debian's Chromium; Playwright's own browser download is not used.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic",
]
# The fake microphone plays a file in a loop; the permission prompt is answered by itself.
FAKE_MICROPHONE_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
VIEWPORT = {"width": 1400, "height": 1000}


def answers_run_to_their_budget(backend) -> None:
    """Random weights may sample an end of turn (ending a run before the page showed it
    streaming) or settle on special or byte-fallback pieces that show no text (freezing the
    page's answer); suppressing them makes every answer plain words exactly as long as asked."""
    tokenizer = backend.processor.tokenizer
    byte_pieces = tokenizer.convert_tokens_to_ids(BYTE_TOKENS)
    backend.model.generation_config.suppress_tokens = sorted({*tokenizer.added_tokens_decoder, *byte_pieces})


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


# --- holding a run or a request in flight ---------------------------------------------

def _flowing() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


@dataclass
class HeldBackend(SlowQueuedBackend):
    """Waits after each piece while `flowing` is clear, so a run stays in flight until the test lets
    it go; `stopped` is set when a stream is closed before its end (a Stop that reached the model)."""

    flowing: threading.Event = field(default_factory=_flowing)
    stopped: threading.Event = field(default_factory=threading.Event)

    def stream(self, messages, settings) -> Iterator:
        with closing(super().stream(messages, settings)) as updates:
            try:
                for update in updates:
                    yield update
                    self.flowing.wait()
            except GeneratorExit:
                self.stopped.set()
                raise


@dataclass
class HeldRequests:
    """Requests the page sent that wait, as on a loaded server, until `release`."""

    routes: list[Route] = field(default_factory=list)

    def hold(self, route: Route) -> None:
        self.routes.append(route)

    def release(self) -> None:
        while self.routes:
            self.routes.pop(0).continue_()


@contextmanager
def held_requests(page: Page, pattern: str) -> Iterator[HeldRequests]:
    """The page's requests to `pattern` wait until released, at the latest when the block ends."""
    held = HeldRequests()
    page.route(pattern, held.hold)
    try:
        yield held
    finally:
        held.release()
        page.unroute(pattern, held.hold)
