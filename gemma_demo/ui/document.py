"""The OCR tab's document reading: a PDF or several pictures, page by page, with downloads.

Every finished page is written to the downloads at once (a `.md` and a `.json` file of the
pages read so far), so a Stop keeps on the page both what was read and the files of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import gradio as gr

from gemma_demo.engine.base import Backend, Stats
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.media.filenames import safe_stem
from gemma_demo.tasks.ocr import OcrMode, as_markdown
from gemma_demo.tasks.ocr_document import (
    DocumentProgress,
    DocumentRequest,
    PageResult,
    read_document,
    to_json,
    to_markdown,
)
from gemma_demo.ui.files import request_folder
from gemma_demo.ui.handlers import first_table, member, require

TEXT_LAYER_CHOICES = (
    ("Off", "off"),
    ("Show it beside the reading", "beside"),
    ("Use it instead, where a page has one", "instead"),
)


def read_pages(
    backend: Backend,
    settings: GenerationSettings,
    document: Sequence[str] | str | None,
    mode: str,
    pages: str | None = None,
    text_layer: str = "off",
) -> Iterator[tuple]:
    """Read a whole document page by page (OCR): a PDF, or pictures of its pages in order.

    Each page is one request at the OCR budget; pages stream in under "## Page N" headings,
    with a progress line ("page 3 of 12"). After each page, the pages read so far are also
    given as a Markdown file and a JSON file (per page: its text, its tables as rows and its
    stats); a stopped reading keeps them.

    Args:
        document: A PDF, or pictures of the pages in order (JPEG, PNG, WebP, GIF or BMP).
        mode: "text" (exact text and line breaks), "markdown" (structure kept) or "table" (tables only).
        pages: Pages to read, counted from 1, like "1-3, 5"; empty for every page.
        text_layer: A PDF page's own text: "off", "beside" (shown beside the reading) or "instead" (used instead of reading the pages that have one).
    """
    files = [document] if isinstance(document, str) else list(document or ())
    require(files or None, "Upload a PDF or pictures of its pages first, or pick an example below it.")
    ocr_mode = member(OcrMode, mode)
    request = DocumentRequest(tuple(files), ocr_mode, (pages or "").strip() or None, text_layer or "off", settings)
    name = safe_stem(Path(files[0]).name, "document")
    with request_folder() as folder:
        for state in read_document(backend, request):
            downloads = gr.skip()
            if state.finished is not None or state.done:
                downloads = write_downloads(state.pages, folder / str(len(state.pages)), name)
            text = to_markdown([*state.pages, *_reading(state, ocr_mode)])
            yield text, text, first_table(_tables(state.pages)), downloads, "", status_line(state)


def _reading(state: DocumentProgress, mode: OcrMode) -> list[PageResult]:
    """The page being read, as far as it has come."""
    if state.page is None or state.finished is not None:
        return []
    return [PageResult(page=state.page, text=state.partial, markdown=as_markdown(state.partial, mode))]


def _tables(pages: Sequence[PageResult]) -> tuple:
    return tuple(table for page in pages for table in page.tables)


def write_downloads(pages: Sequence[PageResult], folder: Path, name: str) -> list[str]:
    """The pages read so far as `NAME.md` and `NAME.json`, in a folder of their own (earlier ones stay as sent)."""
    folder.mkdir(parents=True, exist_ok=True)
    markdown, data = folder / f"{name}.md", folder / f"{name}.json"
    markdown.write_text(to_markdown(pages), encoding="utf-8")
    data.write_text(json.dumps(to_json(pages), ensure_ascii=False, indent=2), encoding="utf-8")
    return [str(markdown), str(data)]


def status_line(state: DocumentProgress) -> str:
    """Where the reading stands ("page 3 of 12", "2 of 12 pages read"), then the pages' figures summed."""
    where = f"{len(state.pages)} of {state.total} pages read" if state.finished is not None else state.status
    total = Stats()
    for page in state.pages:
        total = total.followed_by(page.stats)
    return " · ".join(part for part in (where, total.summary() if state.pages else "") if part)
