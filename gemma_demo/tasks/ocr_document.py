"""Reading a whole document (a PDF, or several pictures in order) page by page, to Markdown.

One picture is one OCR answer; a document is many, and one long answer would stop at the
token limit. So each page is its own request through the backend's `stream`, one at a
time: the scheduler queues each like any other visitor's request, first come first
served, so another visitor waits for at most the page being read. Pages are rendered as
they are sent (`media.pdf.pdf_pages`), so memory holds one page whatever the page count,
and every finished page is kept: a Stop loses only the page being read. The page count is
checked from the PDF's page tree (or the number of pictures and their headers) before
anything is rendered.

Why not two pages in flight: on the 133M test model that read 12 pages 15-25% faster, but
each next page joined the running batch (a restart) ahead of a visitor's older request of
another shape, which then waited for three pages (issue 25's report). A visitor's turn
between pages is worth more here than the overlap.

A PDF page may carry its own text layer (a PDF made by a word processor does; a scan does
not). It can be shown beside the OCR text, to compare, or used instead of reading the page.
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gemma_demo.engine.base import Backend, Stats, Update
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.errors import InvalidInputError
from gemma_demo.media.images import image_size, load_image
from gemma_demo.media.pdf import MAX_PAGES, PdfMode, PdfPage, page_count, parse_page_range, pdf_pages
from gemma_demo.tasks.budget import MediaLimits
from gemma_demo.tasks.messages import image_messages
from gemma_demo.tasks.ocr import DEFAULT_SETTINGS, MODE_PROMPTS, OcrMode, Table, as_markdown, parse_tables
from gemma_demo.tasks.ocr import strip_outer_fence

PDF_SUFFIX = ".pdf"
MAX_DOCUMENT_PAGES = MAX_PAGES


class TextLayer(enum.StrEnum):
    """What to do with a PDF page's own text; the plain strings "off", "beside", "instead" work too."""

    OFF = "off"
    BESIDE = "beside"  # read the page, and show its text layer beside the reading
    INSTEAD = "instead"  # use the text layer where the page has one; read only the pages without


class PageSource(enum.StrEnum):
    OCR = "ocr"
    TEXT_LAYER = "text layer"


@dataclass(frozen=True)
class DocumentRequest:
    """One document to read: a PDF path, or picture paths in page order.

    `pages` is a range like "1-3, 5", counted from 1 (None or blank: every page); it also
    picks among pictures. `mode` and `text_layer` also take their plain string values.
    """

    sources: tuple[str | Path, ...]
    mode: OcrMode = OcrMode.MARKDOWN
    pages: str | None = None
    text_layer: TextLayer = TextLayer.OFF
    settings: GenerationSettings = DEFAULT_SETTINGS

    def __post_init__(self) -> None:
        if isinstance(self.sources, (str, Path)):
            object.__setattr__(self, "sources", (self.sources,))
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "mode", _choice(OcrMode, self.mode, "mode"))
        object.__setattr__(self, "text_layer", _choice(TextLayer, self.text_layer, "text_layer"))
        if not self.sources:
            raise InvalidInputError("No document was given. Upload a PDF or one or more pictures.")
        pdfs = [source for source in self.sources if is_pdf(source)]
        if pdfs and len(self.sources) > 1:
            raise InvalidInputError(
                f"{len(self.sources)} files were given with a PDF among them. Read one PDF at a time, "
                "or several pictures (one per page)."
            )

    @property
    def pdf(self) -> Path | None:
        """The PDF to read, or None for pictures."""
        return Path(self.sources[0]) if is_pdf(self.sources[0]) else None


@dataclass(frozen=True)
class PageResult:
    """One finished page. `text` is the reading (or the text layer, per `source`), the outer fence dropped."""

    page: int  # its number in the document, from 1
    text: str
    markdown: str  # `text` ready to render: plain text fenced, raw HTML shown as text (`ocr.as_markdown`)
    tables: tuple[Table, ...] = ()
    text_layer: str | None = None  # the page's own text, when asked for and the page has one
    source: PageSource = PageSource.OCR
    stats: Stats = field(default_factory=Stats)
    stopped: bool = False  # its answer ended before the model finished it: `text` is what came

    def to_json(self) -> dict:
        return {
            "page": self.page,
            "source": str(self.source),
            "text": self.text,
            "tables": [list(map(list, table)) for table in self.tables],
            "text_layer": self.text_layer,
            "stats": {"prompt_tokens": self.stats.prompt_tokens, "new_tokens": self.stats.new_tokens,
                      "seconds": round(self.stats.elapsed, 3)},
            "stopped": self.stopped,
        }


@dataclass(frozen=True)
class DocumentProgress:
    """Where a reading stands: the pages done so far (in order), and the page being read."""

    pages: tuple[PageResult, ...]  # finished, in page order
    total: int  # pages chosen
    page: int | None = None  # the number of the page being read; None once all are done
    partial: str = ""  # that page's text so far (its outer fence dropped)
    finished: PageResult | None = None  # the page this update finished, if it did
    done: bool = False

    @property
    def status(self) -> str:
        """"page 3 of 12" (its place among the chosen pages, and its number when that differs), or "12 pages read"."""
        if self.page is None:
            return f"{len(self.pages)} page{'s' * (len(self.pages) != 1)} read"
        place = len(self.pages) + (self.finished is None)
        number = "" if place == self.page else f" (page {self.page} of the document)"
        return f"page {place} of {self.total}{number}"


def chosen_pages(request: DocumentRequest, limits: MediaLimits = MediaLimits()) -> list[int]:
    """The page numbers a request reads, in page order, from headers alone; refused over the cap or unreadable.

    The cap is the operator's page limit (`--chat-max-pages`), else `MAX_DOCUMENT_PAGES`,
    whichever is lower: each page is its own request, so the vision encoder's limit on one
    request does not apply, but a document holds the model for as long as its pages take.
    """
    pdf = request.pdf
    count = page_count(pdf) if pdf is not None else len(request.sources)
    numbers = sorted(parse_page_range(request.pages or "", count))
    cap = min(limits.pages or MAX_DOCUMENT_PAGES, MAX_DOCUMENT_PAGES)
    if len(numbers) > cap:
        why = "this server's limit (--chat-max-pages)" if limits.pages and limits.pages < MAX_DOCUMENT_PAGES else (
            "the limit for one document")
        raise InvalidInputError(
            f"{len(numbers)} pages were asked for, but one document may have at most {cap} read at once ({why}). "
            f"Nothing was read. Give a page range like \"1-{cap}\" and read the rest in another run."
        )
    if pdf is None:
        for number in numbers:  # a bad picture is refused now, not after the pages before it were read
            image_size(request.sources[number - 1])
    return numbers


def read_document(
    backend: Backend, request: DocumentRequest, *, limits: MediaLimits = MediaLimits()
) -> Iterator[DocumentProgress]:
    """Read the chosen pages in order, one request each, yielding progress as each page streams.

    Refuses (`InvalidInputError`, before rendering anything) a document over the page cap,
    a bad range or an unreadable file. Closing the iterator stops the pages being read;
    the pages already yielded stay the caller's.
    """
    numbers = chosen_pages(request, limits)
    pages = _document_pages(request, numbers)
    done: list[PageResult] = []
    try:
        for page in pages:
            result = yield from _read_page(backend, request, page, tuple(done), len(numbers))
            done.append(result)
            yield DocumentProgress(tuple(done), len(numbers), result.page, finished=result)
            if result.stopped:
                break
        yield DocumentProgress(tuple(done), len(numbers), done=True)
    finally:
        pages.close()


def to_markdown(pages: Sequence[PageResult]) -> str:
    """The document as one Markdown file: a `## Page N` heading before each page."""
    parts = []
    for page in pages:
        part = f"## Page {page.page}\n\n{page.markdown}"
        if page.stopped:
            part += "\n\n*Stopped: the rest of this page was not read.*"
        if page.text_layer is not None and page.source is PageSource.OCR:
            part += f"\n\n### Text layer of page {page.page}\n\n{as_markdown(page.text_layer, OcrMode.TEXT)}"
        parts.append(part)
    return "\n\n".join(parts) + "\n"


def to_json(pages: Sequence[PageResult]) -> dict:
    """The document as data: per page its text, its tables as rows and its stats."""
    return {"pages": [page.to_json() for page in pages]}


def _choice(kind: type[enum.Enum], value, name: str):
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(repr(member.value) for member in kind)
        raise InvalidInputError(f"{name} {value!r} is not one of {choices}.") from None


def is_pdf(source: str | Path) -> bool:
    return Path(source).suffix.lower() == PDF_SUFFIX


def _document_pages(request: DocumentRequest, numbers: list[int]) -> Iterator[PdfPage]:
    """The pages `numbers` as pictures, one at a time (and each PDF page's text layer where asked)."""
    pdf = request.pdf
    if pdf is not None:
        yield from pdf_pages(pdf, PdfMode.IMAGES, ",".join(map(str, numbers)), request.settings.image_budget,
                             text_layer=request.text_layer is not TextLayer.OFF)
        return
    for number in numbers:
        yield PdfPage(number, image=load_image(request.sources[number - 1]))


def _read_page(backend: Backend, request: DocumentRequest, page: PdfPage, done: tuple[PageResult, ...],
               total: int) -> Generator[DocumentProgress, None, PageResult]:
    """One page's reading, as progress while it streams; or its text layer, where that stands in for it."""
    layer = page.text.replace("\r\n", "\n") or None  # PDFium ends a text layer's lines with \r\n
    if request.text_layer is TextLayer.INSTEAD and layer:
        return PageResult(page.number, layer, as_markdown(layer, OcrMode.TEXT), parse_tables(layer),
                          text_layer=layer, source=PageSource.TEXT_LAYER)
    updates = backend.stream(image_messages(page.image, MODE_PROMPTS[request.mode]), request.settings)
    last = Update()
    try:
        for last in updates:
            if not last.done:
                yield DocumentProgress(done, total, page.number, strip_outer_fence(last.answer))
    finally:
        close = getattr(updates, "close", None)
        if close is not None:
            close()  # a Stop (the caller closing the document) ends the page's generation here
    text = strip_outer_fence(last.answer)
    return PageResult(page.number, text, as_markdown(text, request.mode), parse_tables(text), text_layer=layer,
                      stats=last.stats, stopped=not last.done)
