"""A whole document in the OCR tab, in Chromium: pages arrive one by one, Stop keeps them, downloads.

The model is scripted (`document_script.PagedBackend`: real-shaped Markdown, one answer per
page); everything around it is the real app. One page is held half read, so the test sees the
document as a visitor does while it is read: the pages before it rendered, its heading and
first words, "page 2 of 3". With `--update-readme-screenshot` the sample document, read,
becomes `docs/documents.png`.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import httpx
import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright  # noqa: E402

from browser_helpers import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, labelled_block, open_tab, stats_line  # noqa: E402
from document_script import FEES_HEADERS, FEES_ROWS, HOLD_CEILING_S, PAGE_WORDS, PagedBackend, document_pdf  # noqa: E402
from scripted_backend import serve_scripted  # noqa: E402
from gemma_demo.tasks import ocr  # noqa: E402
from gemma_demo.ui.layout import DOCUMENT_EXAMPLE, EXAMPLES_DIR  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM}"),
    pytest.mark.timeout(300),
]

ROOT = Path(__file__).resolve().parent.parent
README_SCREENSHOT = ROOT / "docs" / "documents.png"
DOCUMENT_BOX = "Or a whole document: a PDF, or pictures of its pages in order"
DOWNLOADS = "Document as Markdown and JSON"
# How long any expectation may wait: a ceiling for a busy machine, never a speed target.
PAGE_TIMEOUT_MS = 60_000
expect.set_options(timeout=PAGE_TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser() -> Browser:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def reading():
    backend = PagedBackend()
    demo = serve_scripted(backend)
    yield demo, backend
    backend.flowing.set()
    demo.close()


@pytest.fixture
def page(browser: Browser):
    context = browser.new_context(viewport=VIEWPORT)
    context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/]|localhost[:/])"), lambda route: route.abort())
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    yield page
    context.close()


def ocr_panel(page: Page, url: str) -> Locator:
    page.goto(url)
    return open_tab(page, "OCR")


def rendered(panel: Locator) -> Locator:
    """The Rendered tab's Markdown: the panel's first Markdown block."""
    return panel.locator(".block").filter(has=panel.page.get_by_test_id("markdown-wrapper")).first


def upload_document(panel: Locator, path: Path) -> None:
    labelled_block(panel, DOCUMENT_BOX).locator("input[type=file]").set_input_files(str(path))
    expect(labelled_block(panel, DOCUMENT_BOX)).to_contain_text(re.compile(re.escape(path.stem)))


def downloaded(panel: Locator, suffix: str) -> httpx.Response:
    """The file the downloads block links to whose name ends in `suffix`."""
    links = labelled_block(panel, DOWNLOADS).get_by_role("link")
    hrefs = [links.nth(n).get_attribute("href") for n in range(links.count())]
    href = next(href for href in hrefs if href and href.split("?")[0].endswith(suffix))
    return httpx.get(href).raise_for_status()


def test_pages_arrive_one_by_one_then_the_downloads_hold_them_all(reading, page, tmp_path):
    demo, backend = reading
    panel = ocr_panel(page, demo.local_url)
    upload_document(panel, document_pdf(tmp_path))
    backend.hold(2)
    panel.get_by_role("button", name="Read document", exact=True).click()

    # Half read: page 1 is on the page, page 2 has its heading and first words, page 3 nothing.
    assert backend.holding.wait(HOLD_CEILING_S), "page 2 was never asked for"
    expect(rendered(panel)).to_contain_text(PAGE_WORDS[0])
    expect(rendered(panel).get_by_role("heading", name="Page 2", exact=True)).to_be_visible()
    expect(rendered(panel)).not_to_contain_text("Page 3")
    expect(stats_line(panel)).to_contain_text("page 2 of 3")
    expect(labelled_block(panel, DOWNLOADS)).to_contain_text(re.compile(r"contract\s*\.md"))
    assert "## Page 2" not in downloaded(panel, ".md").text  # the files hold the pages read so far
    page.screenshot(path=tmp_path / "half-read.png", full_page=True)

    backend.flowing.set()
    expect(rendered(panel).get_by_role("heading", name="Page 3", exact=True)).to_be_visible()
    expect(stats_line(panel)).to_contain_text("3 pages read")
    headings = rendered(panel).get_by_role("heading", name=re.compile(r"^Page \d$")).all_inner_texts()
    assert headings == ["Page 1", "Page 2", "Page 3"]
    table = rendered(panel).locator("table")  # the fees table, rendered as a table
    expect(table.locator("th")).to_have_text(FEES_HEADERS)
    expect(table.locator("tbody tr").first.locator("td")).to_have_text(FEES_ROWS[0])
    expect(rendered(panel)).not_to_contain_text("```")  # the first page's fence was dropped

    markdown = downloaded(panel, ".md").text
    assert [markdown.index(f"## Page {n}") for n in (1, 2, 3)] == sorted(markdown.index(f"## Page {n}") for n in (1, 2, 3))
    document = downloaded(panel, ".json").json()
    pages = document["pages"] if isinstance(document, dict) else document
    assert [entry["page"] for entry in pages] == [1, 2, 3]
    assert pages[1]["tables"] == [[FEES_HEADERS, *FEES_ROWS]]
    assert all(entry["stats"]["new_tokens"] > 0 for entry in pages)
    assert backend.settings[-1].image_budget == ocr.DEFAULT_SETTINGS.image_budget
    json.dumps(document)  # plain data


def test_stop_keeps_the_pages_read_and_their_files(reading, page, tmp_path):
    demo, backend = reading
    panel = ocr_panel(page, demo.local_url)
    upload_document(panel, document_pdf(tmp_path))
    backend.hold(2)
    panel.get_by_role("button", name="Read document", exact=True).click()
    assert backend.holding.wait(HOLD_CEILING_S), "page 2 was never asked for"
    expect(stats_line(panel)).to_contain_text("page 2 of 3")
    asked = len(backend.prompts)

    with page.expect_response("**/cancel"):
        panel.get_by_role("button", name="Stop", exact=True).click()
    backend.flowing.set()  # the held page moves on only once the server took the Stop
    assert backend.stopped.wait(HOLD_CEILING_S), "Stop did not close the page being read"
    expect(rendered(panel)).to_contain_text(PAGE_WORDS[0])
    assert "## Page 1" in downloaded(panel, ".md").text and "## Page 2" not in downloaded(panel, ".md").text
    assert len(backend.prompts) == asked  # no page was asked for after the Stop

    backend.release()  # the next reading runs through
    panel.get_by_role("button", name="Read document", exact=True).click()
    expect(rendered(panel).get_by_role("heading", name="Page 3", exact=True)).to_be_visible()


@pytest.mark.skipif(not (EXAMPLES_DIR / DOCUMENT_EXAMPLE).exists(), reason=f"needs input/{DOCUMENT_EXAMPLE}")
def test_the_sample_document_is_read_for_the_readme_screenshot(reading, page, tmp_path, request):
    """The tab's document example, read through the whole app with scripted answers."""
    demo, backend = reading
    panel = ocr_panel(page, demo.local_url)
    panel.get_by_text("Document examples").locator("xpath=..").locator("tr.tr-body, button").first.click()
    expect(labelled_block(panel, DOCUMENT_BOX)).to_contain_text(Path(DOCUMENT_EXAMPLE).stem)
    panel.get_by_role("button", name="Read document", exact=True).click()
    expect(stats_line(panel)).to_contain_text(re.compile(r"\d+ pages read"))
    expect(rendered(panel).get_by_role("heading", name="Page 2", exact=True)).to_be_visible()
    expect(labelled_block(panel, DOWNLOADS)).to_contain_text(re.compile(r"contract\s*\.json"))

    page.mouse.move(0, 0)
    page.evaluate("() => { document.activeElement?.blur(); window.scrollTo(0, 0); }")
    page.screenshot(path=tmp_path / "documents.png", full_page=True)
    if request.config.getoption("--update-readme-screenshot"):
        shutil.copyfile(tmp_path / "documents.png", README_SCREENSHOT)
