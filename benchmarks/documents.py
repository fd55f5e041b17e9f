"""D1-D3: a whole document read page by page (issue 25), through the app and at real size.

- D1: pages per minute of a 12-page PDF read by one `/ocr_document` call against the same
  12 pages, as pictures, sent as 12 `/ocr` calls one after the other from one client. Both
  through `python app.py` and `gradio_client`, as a visitor's script would; the pictures
  are the PDF's pages rendered as the document task renders them, so both read the same pixels.
- D3: a second visitor's `/caption` first token (first streamed text, as its client sees it)
  sent while a 12-page document is being read, against the same caption sent alone.
- D2: at real size on a CPU, in process: seconds per page of a document against one
  `ocr` call on its first page. Real size takes minutes per page on a CPU, so it runs a few
  pages, a lower image budget and a few tokens, once.

`python -m benchmarks.documents [--quick] [--model NAME]`; `--model tiny` runs D2 on the tiny model, as a dry run.
"""

from __future__ import annotations

import argparse
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from benchmarks.common import CACHE_DIR, ROOT_INPUT, Row, Target, not_measured, paired, seconds, spread
from benchmarks.server import APP, running_app
from gemma_demo.tasks.ocr import DEFAULT_SETTINGS as OCR_SETTINGS

D1_TARGET, D2_TARGET, D3_TARGET = Target(1.3, at_most=False), Target(1.05), Target(2.0)
PAGES = 12
SOURCE_PDF = ROOT_INPUT / "report.pdf"  # repeated to PAGES pages
CAPTION_IMAGE = ROOT_INPUT / "scene.jpg"
APP_TOKENS = 32  # per page: the tiny model's OCR is mostly its 1120-token picture
CAPTION_TOKENS = 8
DOCUMENT_START_CEILING_S = 600.0  # a ceiling for a busy machine, not a speed target
PAGE_STATUS = re.compile(r"page (\d+) of (\d+)")
REAL_PAGES, REAL_BUDGET, REAL_TOKENS = 3, 280, 8
D1_WHAT = f"pages/min of a {PAGES}-page PDF: one /ocr_document call vs {PAGES} /ocr calls one after the other"
D2_WHAT = "seconds per page: a document read page by page vs one ocr call on a page, in process"
D3_WHAT = f"a second visitor's /caption first token while a {PAGES}-page document is read vs alone"


def document_pdf(pages: int = PAGES) -> Path:
    """`SOURCE_PDF`'s pages repeated to `pages` pages, written once to the cache."""
    import pypdfium2 as pdfium

    path = CACHE_DIR / "documents" / f"report-{pages}-pages.pdf"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        source, document = pdfium.PdfDocument(str(SOURCE_PDF)), pdfium.PdfDocument.new()
        while len(document) < pages:
            document.import_pages(source, list(range(min(len(source), pages - len(document)))))
        document.save(str(path))
        source.close()
        document.close()
    return path


def page_pictures(pdf: Path, image_budget: int) -> list[Path]:
    """The PDF's pages as PNG files, rendered as the document task renders them at `image_budget`."""
    from gemma_demo.media.pdf import PdfMode, pdf_pages

    folder = pdf.parent / f"{pdf.stem}-{image_budget}"
    folder.mkdir(exist_ok=True)
    paths = []
    for page in pdf_pages(pdf, PdfMode.IMAGES, "", image_budget):
        path = folder / f"page-{page.number:02d}.png"
        if not path.exists():
            page.image.save(path)
        paths.append(path)
    return paths


# --- through the app (D1, D3) ----------------------------------------------------------

class Visitor:
    """One `gradio_client` client of the app; each method times one thing a visitor does."""

    def __init__(self, url: str, model: str):
        from gradio_client import Client

        self.client, self.model = Client(url, verbose=False, analytics_enabled=False), model
        self.settings = {"model": model, "max_new_tokens": APP_TOKENS, "thinking": "off", "sampling": "off"}

    def document(self, pdf: Path, started: threading.Event | None = None) -> float:
        """Seconds for `/ocr_document` to read the whole PDF; `started` is told once page 2 is being read."""
        from gradio_client import handle_file

        began = time.perf_counter()
        job = self.client.submit(document=[handle_file(str(pdf))], mode="markdown", pages="", text_layer="off",
                                 **self.settings, api_name="/ocr_document")
        for output in job:
            found = PAGE_STATUS.search(output[-1] or "")
            if started is not None and found and int(found.group(1)) >= 2:
                started.set()
        *_, status = job.result()
        wall = time.perf_counter() - began
        if f"{PAGES} pages read" not in (status or ""):
            raise RuntimeError(f"the document did not finish: its last status line was {status!r}")
        return wall

    def pictures(self, pictures: list[Path]) -> float:
        """Seconds for one `/ocr` call per picture, one after the other."""
        from gradio_client import handle_file

        began = time.perf_counter()
        for picture in pictures:
            self.client.predict(handle_file(str(picture)), "markdown", **self.settings, api_name="/ocr")
        return time.perf_counter() - began

    def caption_first_text(self) -> float:
        """Seconds from sending a caption request until its first streamed text."""
        from gradio_client import handle_file

        began = time.perf_counter()
        job = self.client.submit(handle_file(str(CAPTION_IMAGE)), "short", "", model=self.model,
                                 max_new_tokens=CAPTION_TOKENS, thinking="off", sampling="off", api_name="/caption")
        first = None
        for text, _reasoning, _stats in job:
            if first is None and text:
                first = time.perf_counter() - began
        job.result()
        if first is None:
            raise RuntimeError("the caption streamed no text")
        return first


def caption_during_document(reader: Visitor, other: Visitor, pdf: Path, pool: ThreadPoolExecutor) -> float:
    """The caption's first text, sent once the document reads its second page; the document runs to its end."""
    started = threading.Event()  # set from the document's thread once it reads its second page
    document = pool.submit(reader.document, pdf, started)
    if not started.wait(DOCUMENT_START_CEILING_S):
        document.result()  # raises what stopped it, if anything did
        raise RuntimeError("the document ended before its second page was read")
    first = other.caption_first_text()
    if document.done():
        raise RuntimeError("the document ended before the caption's first text: give it more pages or tokens")
    document.result()
    return first


def app_rows(label: str, model: str, reps: int) -> list[Row]:
    pdf = document_pdf()
    pictures = page_pictures(pdf, OCR_SETTINGS.image_budget)
    with running_app(model) as (url, _), ThreadPoolExecutor(1) as pool:
        reader, other = Visitor(url, model), Visitor(url, model)
        d1 = paired(lambda: reader.pictures(pictures), lambda: reader.document(pdf), reps)
        d3 = paired(lambda: caption_during_document(reader, other, pdf, pool), other.caption_first_text, reps)
    per_minute = lambda wall: f"{PAGES * 60 / wall:.1f} pages/min"
    load = ", ".join(f"{x:.1f}" for x in psutil.getloadavg())
    return [
        Row("D1", f"{label}: {D1_WHAT}", per_minute(d1.b_median), per_minute(d1.a_median), d1.ratio, D1_TARGET,
            f"{spread(d1)}; ratio = document pages/min ÷ separate calls'; {APP_TOKENS} new tokens a page at most, "
            f"{OCR_SETTINGS.image_budget}-budget pages, one client; ABBA, {reps} pairs after a warm-up pair; load {load}"),
        Row("D3", f"{label}: {D3_WHAT}", seconds(d3.a_median), seconds(d3.b_median), d3.ratio, D3_TARGET,
            f"{spread(d3)}; first streamed text as its client sees it, sent once page 2 was being read; "
            f"ABBA, {reps} pairs after a warm-up pair; load {load}"),
    ]


# --- in process, at real size (D2) -----------------------------------------------------

def real_size_row(label: str, model: str) -> Row:
    """A `REAL_PAGES`-page document and one page alone, once each, after a warm-up page."""
    from gemma_demo.engine.base import last_update
    from gemma_demo.engine.loading import load_local_backend
    from gemma_demo.engine.options import LoadOptions
    from gemma_demo.tasks.ocr import OcrMode, ocr
    from gemma_demo.tasks.ocr_document import DocumentRequest, read_document

    settings = OCR_SETTINGS.with_changes(image_budget=REAL_BUDGET, max_new_tokens=REAL_TOKENS)
    pdf = document_pdf(REAL_PAGES)
    picture = page_pictures(pdf, REAL_BUDGET)[0]
    backend = load_local_backend(model, LoadOptions())

    def one_page() -> float:
        began = time.perf_counter()
        for result in ocr(backend, picture, OcrMode.MARKDOWN, settings):
            pass
        if not result.done:
            raise RuntimeError("the page's reading did not finish")
        return time.perf_counter() - began

    def per_page() -> float:
        began = time.perf_counter()
        request = DocumentRequest((str(pdf),), OcrMode.MARKDOWN, settings=settings)
        progress = last_update(read_document(backend, request))
        if len(progress.pages) != REAL_PAGES:
            raise RuntimeError(f"{len(progress.pages)} of {REAL_PAGES} pages were read")
        return (time.perf_counter() - began) / REAL_PAGES

    one_page()  # the first call pays one-off costs (oneDNN kernels) for both
    document_s, page_s = per_page(), one_page()
    load = ", ".join(f"{x:.1f}" for x in psutil.getloadavg())
    return Row("D2", f"{label}: {D2_WHAT}", f"{seconds(document_s)} a page", seconds(page_s), document_s / page_s,
               D2_TARGET, f"{REAL_PAGES} pages at a {REAL_BUDGET} image budget, {REAL_TOKENS} new tokens a page at "
               f"most; once each after a warm-up page; load {load}")


def run(quick: bool = False, model: str | None = None, only: str = "") -> list[Row]:
    """D1 and D3 on the tiny model (and the ~133M one in a full run), D2 at real size unless `model` is given.

    `only` is "app" (D1, D3) or "real_size" (D2); empty for both.
    """
    rows: list[Row] = []
    if only != "real_size":
        rows += app_subject_rows(quick)
    if only != "app":
        rows.append(d2_row(model))
    return rows


def app_subject_rows(quick: bool) -> list[Row]:
    rows: list[Row] = []
    if not APP.exists():
        rows += [not_measured("D1", D1_WHAT, D1_TARGET, "app.py is missing"),
                 not_measured("D3", D3_WHAT, D3_TARGET, "app.py is missing")]
    else:
        from benchmarks.models import small_checkpoint

        subjects = [("tiny", "tiny")]
        if not quick:
            checkpoint = small_checkpoint()
            subjects.append((f"{checkpoint.parameters / 1e6:.0f}M E2B-like", str(checkpoint.path)))
        for label, subject in subjects:
            rows += app_rows(label, subject, 2 if quick else 4)
    return rows


def d2_row(model: str | None) -> Row:
    from benchmarks.models import real_size_checkpoint

    label = "E2B real size" if model is None else model
    try:
        return real_size_row(label, model or str(real_size_checkpoint()))
    except Exception as error:  # noqa: BLE001 - a failure at real size is a row (a bug to fix), not a crash
        return not_measured("D2", f"{label}: {D2_WHAT}", D2_TARGET, f"{type(error).__name__}: {error}"[:300])


if __name__ == "__main__":
    from benchmarks.report import print_rows

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", help="run D2 on this model instead of the real-size E2B folder (e.g. tiny)")
    parser.add_argument("--only", choices=("app", "real_size"), help="only the app rows (D1, D3) or only D2")
    arguments = parser.parse_args()
    print_rows(run(arguments.quick, arguments.model, arguments.only or ""))
