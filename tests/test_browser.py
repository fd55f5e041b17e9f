"""The web app in a real browser: Chromium, driven by Playwright, against the app in this process.

Every tab is used as a person would: open it, upload a sample or click an example, press
the button and watch the answer stream in. The app runs here on the tiny model (its
answers are gibberish, but every path around the model is real), so the backend's
generation threads can be watched when Stop is pressed. Two tests swap the model for a
scripted backend whose answers are known: a hostile generated page, and the detection
run that makes the README's screenshot.

Screenshots of each tab go to the test's temporary folder, the README's too; only
`--update-readme-screenshot` copies that one to `docs/screenshot.png`, so a test run
leaves the work tree as it was.
Two tests at the end pin bugs found here: empty number fields reach the app as 0.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright  # noqa: E402

from app_helpers import generating, wait_until  # noqa: E402
from browser_helpers import (  # noqa: E402
    HeldBackend,
    answers_run_to_their_budget,
    CHROMIUM,
    CHROMIUM_ARGS,
    FAKE_MICROPHONE_ARGS,
    VIEWPORT,
    block_of,
    held_requests,
    labelled_block,
    open_tab,
    serve,
    set_max_new_tokens,
    start_watching,
    stats_line,
    upload,
    wait_for_watch,
)
from scripted_backend import SHAPES_PIXEL_BOXES, ScriptedBackend, serve_scripted  # noqa: E402
from gemma_demo.media.audio import is_silent, load_audio  # noqa: E402
from gemma_demo.media.timing import SAMPLE_RATE  # noqa: E402
from gemma_demo.engine.cache import ModelCache  # noqa: E402
from gemma_demo.tasks import caption as caption_task, html_page as html_task  # noqa: E402
from gemma_demo.tasks.html_page import PREVIEW_TITLE  # noqa: E402
from gemma_demo.ui.layout import TITLE  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM}"),
    pytest.mark.timeout(300),
]

ROOT = Path(__file__).resolve().parent.parent
INPUT = ROOT / "input"
README_SCREENSHOT = ROOT / "docs" / "screenshot.png"
STREAM_TOKENS = 400  # the tiny model writes ~150 tokens/s: enough updates to see it stream
LONG_TOKENS = 4000  # ~30 s: only Stop can end it this early
RUN_TIMEOUT_MS = 120_000
# How long any expectation may wait: a ceiling for a busy machine, never a speed target.
PAGE_TIMEOUT_MS = 60_000
expect.set_options(timeout=PAGE_TIMEOUT_MS)
RECORD_MS = 2_500
SHAPES_OBJECTS = ", ".join(SHAPES_PIXEL_BOXES)


# --- fixtures -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def microphone_wav(tmp_path_factory) -> Path:
    """`input/speech.wav` at 48 kHz, the rate Chromium's fake microphone captures at."""
    import soundfile as sf
    import soxr

    samples, rate = sf.read(INPUT / "speech.wav", dtype="float32")
    path = tmp_path_factory.mktemp("microphone") / "speech-48k.wav"
    sf.write(path, soxr.resample(samples, rate, 48_000), 48_000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def browser(microphone_wav) -> Browser:
    with sync_playwright() as playwright:
        args = [*CHROMIUM_ARGS, *FAKE_MICROPHONE_ARGS, f"--use-file-for-fake-audio-capture={microphone_wav}"]
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def app(tiny_options):
    cache = ModelCache()
    answers_run_to_their_budget(cache.get("tiny", tiny_options))
    demo = serve("tiny", tiny_options, cache)
    yield demo
    demo.close()


@pytest.fixture(scope="module")
def scripted():
    """The app over a `ScriptedBackend`, registered as the cache's local loader."""
    backend = ScriptedBackend()
    demo = serve_scripted(backend)
    yield demo, backend
    demo.close()


@pytest.fixture
def page(browser: Browser):
    """A fresh page that may use the microphone and reaches nothing but this machine."""
    context = browser.new_context(viewport=VIEWPORT)
    context.grant_permissions(["microphone"])
    context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/]|localhost[:/])"), lambda route: route.abort())
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    yield page
    context.close()


def open_app(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.get_by_role("tab", name="Detection", exact=True)).to_be_visible()


# --- every tab streams ----------------------------------------------------------------

def has_image(block: Locator) -> None:
    expect(block.get_by_role("button", name="Remove Image")).to_be_visible()


def upload_picture(name: str) -> Callable[[Locator], None]:
    def choose(panel: Locator) -> None:
        upload(panel, INPUT / name)
        has_image(panel.locator(".block").first)
    return choose


def first_example(panel: Locator) -> None:
    """Whatever the tab's first example is: its picture lands in the upload area."""
    panel.locator("tr.tr-body").first.locator("td").first.click()
    has_image(panel.locator(".block").first)


def example_row(text: str, loaded: Callable[[Locator], None]) -> Callable[[Locator], None]:
    """The example whose row shows `text` (a file name or a thumbnail's source)."""
    def choose(panel: Locator) -> None:
        rows = panel.locator("tr.tr-body")
        row = rows.filter(has_text=text).or_(rows.filter(has=panel.page.locator(f"img[src*='{text}']"))).first
        row.locator("td").first.click()
        loaded(panel)
    return choose


def audio_loaded(panel: Locator) -> None:
    expect(panel.get_by_role("button", name="Play", exact=True)).to_be_visible()


def upload_video(panel: Locator) -> None:
    upload(panel, INPUT / "clip.mp4")
    expect(panel.get_by_test_id("Video-player")).to_have_attribute("src", re.compile(r"clip\.mp4$"))


def textbox(label: str) -> Callable[[Locator], Locator]:
    return lambda panel: block_of(panel.get_by_label(label, exact=True))


def markdown_block(panel: Locator) -> Locator:
    return panel.locator(".block").filter(has=panel.page.get_by_test_id("markdown-wrapper")).first


def check_detection(panel: Locator) -> None:
    expect(labelled_block(panel, "Found").locator("img")).to_be_visible()
    expect(panel.get_by_label("Model answer", exact=True)).not_to_have_value("")


def check_caption(panel: Locator) -> None:
    expect(panel.get_by_label("Caption", exact=True)).not_to_have_value("")


def check_ocr(panel: Locator) -> None:
    assert markdown_block(panel).inner_text().strip()
    panel.get_by_role("tab", name="Raw text").click()
    expect(panel.get_by_label("Raw text", exact=True)).not_to_have_value("")


def check_audio(panel: Locator) -> None:
    expect(panel.get_by_label("Subtitles (SRT)", exact=True)).to_have_value(re.compile(r"^1\n00:00:00,000 --> "))
    expect(labelled_block(panel, "Subtitle files (SRT, VTT, TXT)")).to_contain_text(re.compile(r"speech\s*\.srt"))


def check_video(panel: Locator) -> None:
    frames = labelled_block(panel, "Frames the model saw").locator("img")
    expect(frames.first).to_be_visible()
    assert frames.count() >= 2
    expect(panel.get_by_label("Answer", exact=True)).not_to_have_value("")


def check_html(panel: Locator) -> None:
    preview = panel.locator(f"iframe[title='{PREVIEW_TITLE}']")
    expect(preview).to_have_attribute("sandbox", "allow-scripts")
    expect(labelled_block(panel, "Page")).to_contain_text(re.compile(r"sketch\s*\.html"))


@dataclass(frozen=True)
class TabRun:
    tab: str
    choose: Callable[[Locator], None]  # puts the sample in
    button: str
    output: Callable[[Locator], Locator]  # the block the answer streams into
    check: Callable[[Locator], None]  # what the finished run shows
    fill: dict[str, str] | None = None
    tokens: int = STREAM_TOKENS


TAB_RUNS = [
    TabRun("Detection", upload_picture("shapes.jpg"), "Detect boxes", textbox("Model answer"), check_detection,
           fill={"Objects": "red circle, star"}),
    TabRun("Captioning", first_example, "Caption", textbox("Caption"), check_caption),
    TabRun("OCR", upload_picture("document.png"), "Read", markdown_block, check_ocr),
    TabRun("Audio", example_row("speech.wav", audio_loaded), "Transcribe",
           textbox("Transcript, translation or answer"), check_audio),
    TabRun("Video", upload_video, "Ask", textbox("Answer"), check_video,
           fill={"Question": "Which way does the red ball move?", "End (s)": "4"}),
    TabRun("Image → HTML", example_row("sketch.png", lambda panel: has_image(panel.locator(".block").first)),
           "Generate page", lambda panel: labelled_block(panel, "HTML"), check_html),
]


@pytest.mark.parametrize("run", TAB_RUNS, ids=[run.tab.split()[0].lower() for run in TAB_RUNS])
def test_each_tab_streams_its_answer_into_the_page(app, page, run: TabRun, tmp_path):
    open_app(page, app.local_url)
    set_max_new_tokens(page, run.tokens)
    panel = open_tab(page, run.tab)
    run.choose(panel)
    for label, value in (run.fill or {}).items():
        panel.get_by_label(label, exact=True).fill(value)

    start_watching(run.output(panel), "answer")
    start_watching(stats_line(panel), "stats")
    panel.get_by_role("button", name=run.button, exact=True).click()
    answer = wait_for_watch(page, "answer", RUN_TIMEOUT_MS)
    stats = wait_for_watch(page, "stats", RUN_TIMEOUT_MS)

    # Streaming: the page showed at least two different partial answers while the event ran.
    assert len(set(answer.lengths_while_running)) >= 2, answer.changes
    assert len(stats.changes) >= 2, stats.changes
    expect(stats_line(panel)).to_contain_text(re.compile(r"\d+ prompt tokens · \d+ new tokens"))
    run.check(panel)
    page.screenshot(path=tmp_path / f"{run.tab.split()[0].lower()}.png", full_page=True)


# --- Stop -----------------------------------------------------------------------------

def new_tokens(panel: Locator) -> int:
    return int(re.search(r"(\d+) new tokens", stats_line(panel).inner_text()).group(1))


def test_stop_ends_a_long_generation_in_the_page_and_the_backend(app, page, tmp_path):
    open_app(page, app.local_url)
    set_max_new_tokens(page, LONG_TOKENS)
    panel = open_tab(page, "Captioning")
    upload_picture("scene.jpg")(panel)
    caption = panel.get_by_label("Caption", exact=True)
    run, stop = (panel.get_by_role("button", name=name, exact=True) for name in ("Caption", "Stop"))
    assert wait_until(lambda: not generating()), "a generation from another test is still running"

    start_watching(block_of(caption), "caption")
    run.click()
    page.wait_for_function("area => area.value.length > 20", arg=caption.element_handle(), timeout=RUN_TIMEOUT_MS)
    assert wait_until(generating)
    stop.click()

    watch = wait_for_watch(page, "caption", RUN_TIMEOUT_MS)  # the progress overlay went away
    assert wait_until(lambda: not generating()), "the generation thread outlived Stop"
    stopped_at = caption.input_value()
    page.wait_for_timeout(1_000)  # long enough for dozens of tokens, had it kept going
    assert caption.input_value() == stopped_at
    assert len(set(watch.lengths_while_running)) >= 2
    assert 0 < new_tokens(panel) < LONG_TOKENS
    page.screenshot(path=tmp_path / "stopped.png", full_page=True)

    # The tab is ready again: both buttons work and the next run completes.
    expect(run).to_be_enabled()
    expect(stop).to_be_enabled()
    set_max_new_tokens(page, 16)
    start_watching(block_of(caption), "again")
    run.click()
    wait_for_watch(page, "again", RUN_TIMEOUT_MS)
    assert new_tokens(panel) <= 16
    assert wait_until(lambda: not generating())


# --- the microphone -------------------------------------------------------------------

def test_a_microphone_recording_is_transcribed(app, page, tmp_path):
    """Chromium's fake microphone plays `input/speech.wav`; the page records it and uploads it."""
    open_app(page, app.local_url)
    set_max_new_tokens(page, 40)
    panel = open_tab(page, "Audio")
    panel.get_by_role("button", name="Record audio").click()
    panel.get_by_role("button", name="Record", exact=True).click()
    page.wait_for_timeout(RECORD_MS)  # the recording's length: the one wait that has to be a wait
    with page.expect_response(re.compile(r"/gradio_api/upload")) as uploaded:
        panel.locator("button.stop-button").click()
    audio_loaded(panel)

    # What the page uploaded is the speech, not silence: the app runs here, so decode its copy.
    (recording,) = uploaded.value.json()
    samples = load_audio(recording)
    assert len(samples) / SAMPLE_RATE >= 1.0 and not is_silent(samples)

    transcript = panel.get_by_label("Transcript, translation or answer", exact=True)
    start_watching(block_of(transcript), "transcript")
    panel.get_by_role("button", name="Transcribe", exact=True).click()
    wait_for_watch(page, "transcript", RUN_TIMEOUT_MS)
    expect(transcript).not_to_have_value("")
    expect(stats_line(panel)).to_contain_text("Chunk 1 of 1")
    expect(panel.get_by_label("Subtitles (SRT)", exact=True)).to_have_value(re.compile("-->"))
    page.screenshot(path=tmp_path / "microphone.png", full_page=True)


# --- the generated page's sandbox -----------------------------------------------------

LISTEN_JS = """() => {
  window.__probes = [];
  window.addEventListener("message", (event) => {
    if (event.data && event.data.probe) window.__probes.push({ origin: event.origin, report: event.data.probe });
  });
  document.cookie = "session=secret-cookie; path=/";
  localStorage.setItem("secret", "secret-storage");
}"""


def test_a_generated_page_cannot_reach_the_app(scripted, page, tmp_path):
    """The scripted model answers with a page whose script attacks the app around its preview.

    The page goes through the real path (stream, extraction, `sandboxed_preview`, the HTML
    component); its script runs, but every reach into the parent fails, and its only way
    out is `postMessage`, which it uses to report what happened.
    """
    demo, backend = scripted
    open_app(page, demo.local_url)
    page.evaluate(LISTEN_JS)
    url = page.url
    panel = open_tab(page, "Image → HTML")
    upload_picture("sketch.png")(panel)
    panel.get_by_role("button", name="Generate page", exact=True).click()

    preview = panel.locator(f"iframe[title='{PREVIEW_TITLE}']")
    expect(preview).to_have_attribute("sandbox", "allow-scripts", timeout=RUN_TIMEOUT_MS)
    page.wait_for_function("() => window.__probes.length > 0")
    expect(page.frame_locator(f"iframe[title='{PREVIEW_TITLE}']").get_by_text("Probe finished.")).to_be_visible()
    (probe,) = page.evaluate("() => window.__probes")
    report = probe["report"]

    assert "HTML page" in backend.prompts[-1]
    assert probe["origin"] == "null" and report["origin"] == "null"  # an opaque origin
    assert report["title"] == report["body"] == "threw SecurityError", report
    assert report["cookie"] == "threw SecurityError", report
    assert report["storage"] == "threw SecurityError", report
    assert report["navigation"] == "threw SecurityError", report
    assert report["api"].startswith(demo.local_url) and report["fetch"] == "threw TypeError", report

    # The app is untouched.
    assert page.title() == TITLE and page.url == url
    expect(page.get_by_role("tab", name="Detection")).to_be_visible()
    expect(page.get_by_role("heading", name="pwned")).to_have_count(0)
    assert "secret-cookie" in page.evaluate("() => document.cookie")
    page.screenshot(path=tmp_path / "html-sandbox.png", full_page=True)


# --- the README's screenshot ----------------------------------------------------------

def test_detection_draws_labelled_boxes_for_the_readme_screenshot(scripted, page, tmp_path, request):
    """Detection on `input/shapes.jpg`, through the whole app; with `--update-readme-screenshot`
    the picture is copied to `docs/screenshot.png`.

    The model's answer is scripted (`browser_helpers.SHAPES_ANSWER`): boxes in Gemma 4's
    0-1000 [y0, x0, y1, x1] format, placed from how `input/make_samples.py` draws the
    shapes, since the tiny model's boxes would be noise. Everything after the answer
    (parsing, mapping to pixels, drawing, legend, JSON, COCO file) is the real app.
    """
    demo, backend = scripted
    open_app(page, demo.local_url)
    panel = open_tab(page, "Detection")
    upload_picture("shapes.jpg")(panel)
    panel.get_by_label("Objects", exact=True).fill(SHAPES_OBJECTS)
    answer = panel.get_by_label("Model answer", exact=True)
    start_watching(block_of(answer), "answer")
    backend.resume = threading.Event()  # the answer waits halfway until the page has shown it
    try:
        panel.get_by_role("button", name="Detect boxes", exact=True).click()
        page.wait_for_function("key => window.__watches[key].changes.some((c) => c.running && c.length)",
                               arg="answer", timeout=RUN_TIMEOUT_MS)
    finally:
        backend.resume.set()
        backend.resume = None
    watch = wait_for_watch(page, "answer", RUN_TIMEOUT_MS)
    # Streamed: the page showed part of the answer while the event ran, then all of it.
    assert min(watch.lengths_while_running) < len(answer.input_value())

    found = labelled_block(panel, "Found").locator("img")
    expect(found).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=found.element_handle())
    legend = labelled_block(panel, "Legend")
    for label in SHAPES_PIXEL_BOXES:
        expect(legend).to_contain_text(label)
    coco_file = labelled_block(panel, "COCO file")
    expect(coco_file).to_contain_text(re.compile(r"shapes\.coco\s*\.json"))
    coco = httpx.get(coco_file.get_by_role("link").first.get_attribute("href")).raise_for_status().json()
    names = {category["id"]: category["name"] for category in coco["categories"]}
    drawn = {names[item["category_id"]]: item["bbox"] for item in coco["annotations"]}
    for label, (x0, y0, x1, y1) in SHAPES_PIXEL_BOXES.items():  # the boxes land on the shapes
        assert drawn[label] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=2), label
    expect(page.get_by_label("Max new tokens")).to_be_hidden()  # the settings stay folded

    page.mouse.move(0, 0)
    page.evaluate("() => { document.activeElement?.blur(); window.scrollTo(0, 0); }")
    page.screenshot(path=tmp_path / "detection.png", full_page=True)
    if request.config.getoption("--update-readme-screenshot"):
        shutil.copyfile(tmp_path / "detection.png", README_SCREENSHOT)


# --- empty number fields ----------------------------------------------------------------
# Gradio 6's Number field shows and sends 0 for an empty value (`value ??= 0` in its
# frontend) once it is drawn, so 0 has to mean "the default" wherever empty does.

def test_opening_the_settings_keeps_each_tasks_token_limit(scripted, page):
    """The field shows 0 once drawn; each task must still get its own limit (the backend records it)."""
    demo, backend = scripted
    open_app(page, demo.local_url)
    accordion = page.get_by_role("button", name=re.compile("Model and generation settings"))
    accordion.click()
    expect(page.get_by_label("Max new tokens")).to_be_visible()
    accordion.click()
    for tab, button, defaults in (("Captioning", "Caption", caption_task.DEFAULT_SETTINGS),
                                  ("Image → HTML", "Generate page", html_task.DEFAULT_SETTINGS)):
        panel = open_tab(page, tab)
        upload_picture("scene.jpg")(panel)
        start_watching(stats_line(panel), tab)
        asked = len(backend.settings)
        panel.get_by_role("button", name=button, exact=True).click()
        wait_for_watch(page, tab, RUN_TIMEOUT_MS)
        assert len(backend.settings) == asked + 1
        assert backend.settings[-1].max_new_tokens == defaults.max_new_tokens, tab
    assert caption_task.DEFAULT_SETTINGS.max_new_tokens != html_task.DEFAULT_SETTINGS.max_new_tokens


def test_video_runs_with_the_time_range_left_empty(app, page):
    open_app(page, app.local_url)
    panel = open_tab(page, "Video")
    upload_video(panel)
    answer = panel.get_by_label("Answer", exact=True)
    start_watching(block_of(answer), "answer")
    panel.get_by_role("button", name="Ask", exact=True).click()
    wait_for_watch(page, "answer", RUN_TIMEOUT_MS)


# --- the Chat tab -----------------------------------------------------------------------
# A scripted model (`browser_helpers.HeldBackend`) supplies real-shaped answers: a thought
# in Gemma 4's channel format, tool calls in its call format; the rest is the real app.

CHAT_SCREENSHOT = ROOT / "docs" / "chat.png"
CHAT_THOUGHT = "<|channel>thought\nRound shapes in primary colours; the red one is on the left.<channel|>"
CHAT_FIRST = "A red circle, a blue square, a green triangle and a yellow star on a white background."
CHAT_FOLLOW_UP = "The red circle is in the upper left, the star in the lower right."
CHAT_RETRIED = "Upper left: the red circle. Lower right: the star."
CHAT_LONG = " ".join(f"word{n}" for n in range(400)) + " THE-END"


@pytest.fixture(scope="module")
def chatting():
    backend = HeldBackend()
    demo = serve_scripted(backend)
    yield demo, backend
    demo.close()


def send_chat(panel: Locator, text: str, picture: Path | None = None) -> None:
    box = panel.get_by_placeholder("Message (Enter to send)")
    if picture is not None:
        panel.locator("input[type=file]").first.set_input_files(str(picture))
        expect(panel.get_by_role("listitem", name="File thumbnail").locator("img")).to_be_visible()
    box.fill(text)
    box.press("Enter")


def conversation(panel: Locator) -> Locator:
    return panel.get_by_role("log", name="chatbot conversation")


def test_a_chat_with_a_picture_follow_up_retry_stop_and_reasoning(chatting, page, tmp_path, request):
    demo, backend = chatting
    backend.answers.clear()
    backend.enqueue(CHAT_THOUGHT + CHAT_FIRST, CHAT_FOLLOW_UP, CHAT_RETRIED, CHAT_LONG)
    open_app(page, demo.local_url)
    panel = open_tab(page, "Chat")
    chat = conversation(panel)
    send_chat(panel, "What is in this picture?", INPUT / "shapes.jpg")
    expect(chat).to_contain_text(CHAT_FIRST, timeout=RUN_TIMEOUT_MS)
    expect(chat.get_by_text("Reasoning").first).to_be_visible()
    expect(chat.get_by_text("the red one is on the left")).to_be_hidden()  # collapsed once the answer came
    expect(chat.locator("img").first).to_be_visible()  # the picture is part of the user's turn

    send_chat(panel, "Where are the circle and the star?")
    expect(chat).to_contain_text(CHAT_FOLLOW_UP, timeout=RUN_TIMEOUT_MS)
    asked = backend.requests[1][0]
    assert [m["role"] for m in asked] == ["user", "assistant", "user"]  # the first turn, then the new one
    assert "the red one" not in str(asked[1]["content"])  # without its reasoning

    chat.get_by_role("button", name="Retry").last.click()
    expect(chat).to_contain_text(CHAT_RETRIED, timeout=RUN_TIMEOUT_MS)
    expect(chat).not_to_contain_text(CHAT_FOLLOW_UP)
    assert len(backend.requests) == 3 and backend.requests[2][0] == asked

    page.mouse.move(0, 0)
    page.screenshot(path=tmp_path / "chat.png", full_page=True)
    if request.config.getoption("--update-readme-screenshot"):
        shutil.copyfile(tmp_path / "chat.png", CHAT_SCREENSHOT)

    backend.flowing.clear()  # the long answer waits after its first piece until Stop has landed
    backend.stopped.clear()
    send_chat(panel, "Now write a very long story.")
    expect(chat).to_contain_text("word0", timeout=RUN_TIMEOUT_MS)
    # The page ignores a send while it counts a run as running, and counts a stopped one so until
    # its request to cancel it comes back, which a loaded server answers late: all that time the
    # box takes nothing, so no message can be lost. The first one it takes is answered.
    box = panel.get_by_placeholder("Message (Enter to send)")
    with held_requests(page, "**/cancel") as held:
        with page.expect_request("**/cancel"):
            panel.get_by_role("button", name="Stop", exact=True).click()
        expect(box).not_to_be_editable()
        assert len(held.routes) == 1
        with page.expect_response("**/cancel"):
            held.release()
    backend.flowing.set()  # the stream moves on only once the server was told to stop it
    assert backend.stopped.wait(RUN_TIMEOUT_MS / 1000), "Stop did not close the model's stream"
    send_chat(panel, "Still there?")  # at once: the box waits for the page, never the other way round
    expect(chat).to_contain_text("A scripted answer.", timeout=RUN_TIMEOUT_MS)
    expect(chat).not_to_contain_text("THE-END")
    asked = backend.requests[-1][0]
    assert "Still there?" in str(asked[-1]["content"]) and "word0" in str(asked[-2]["content"])
    assert "THE-END" not in str(asked)  # the stopped answer, as far as it got, then the new message
    expect(box).to_be_editable()  # free again once the turn has ended


def test_an_agent_turn_shows_the_call_the_drawn_picture_and_the_answer(chatting, page):
    from gemma_demo.engine.tool_syntax import write_call
    from scripted_backend import SHAPES_ANSWER

    demo, backend = chatting
    backend.answers.clear()
    backend.enqueue(write_call("detect_objects", {"attachment": "0", "objects": SHAPES_OBJECTS}), SHAPES_ANSWER,
                    "I drew a box around each of the four shapes.")
    open_app(page, demo.local_url)
    panel = open_tab(page, "Chat")
    panel.get_by_role("button", name=re.compile("Agent and JSON answer")).click()
    panel.get_by_label("Agent", exact=True).check()
    send_chat(panel, "Find the shapes.", INPUT / "shapes.jpg")
    chat = conversation(panel)
    expect(chat).to_contain_text("I drew a box around each of the four shapes.", timeout=RUN_TIMEOUT_MS)
    expect(chat.get_by_text(re.compile(r"Used detect_objects · \d+\.\d\d s"))).to_be_visible()
    pictures = chat.locator("img")
    expect(pictures).to_have_count(2)  # the upload, then the drawing
    page.wait_for_function("img => img.complete && img.naturalWidth === 640", arg=pictures.last.element_handle())
