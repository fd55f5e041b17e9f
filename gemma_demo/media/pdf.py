"""PDF documents in, for the chat: each page as a picture (default) or the PDF's own text.

Pictures keep what text extraction loses (scans, tables, figures); the text layer costs
far fewer tokens when the PDF has one. Pages are rendered with PDFium (`pypdfium2`, no
system packages needed) at about the pixel count the chosen image budget can use, since
the processor would shrink anything larger to that anyway.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pypdfium2 as pdfium
from PIL import Image

from gemma_demo.errors import InvalidInputError

# Gemma 4 pools 3x3 patches of 16 px into one soft token: one token covers 48x48 pixels.
PIXELS_PER_SOFT_TOKEN = 48 * 48
POINTS_PER_INCH = 72
MAX_RENDER_SCALE = 4.0  # 288 dpi: past this a page picture only grows, it gains no detail
MAX_PAGES = 100
PAGE_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


class PdfMode(enum.Enum):
    IMAGES = "images"
    TEXT = "text"


@dataclass(frozen=True)
class PdfPage:
    """One page as the model gets it: `number` counts from 1, as people do."""

    number: int
    image: Image.Image | None = None
    text: str = ""


def parse_page_range(spec: str, page_count: int) -> list[int]:
    """Page numbers (from 1) named by a range like "1-3, 7"; empty or blank means every page."""
    if not (spec or "").strip():
        return list(range(1, page_count + 1))
    numbers: list[int] = []
    for piece in spec.split(","):
        match = PAGE_RANGE.match(piece)
        if match is None:
            raise InvalidInputError(f"{piece.strip()!r} is not a page range. Write pages like \"1-3, 7\".")
        first, last = int(match[1]), int(match[2] or match[1])
        if not 1 <= first <= last <= page_count:
            raise InvalidInputError(
                f"Pages {piece.strip()} are outside the document, which has {page_count} page(s)."
            )
        numbers += [n for n in range(first, last + 1) if n not in numbers]
    return numbers


@dataclass(frozen=True)
class PdfSurvey:
    """What the chosen pages would cost, read from the page count and page sizes: nothing rendered."""

    pages: int
    pixels: int  # of the page pictures, in "pages as images" mode; 0 for the text layer


def survey_pdf(path: str | Path, mode: PdfMode = PdfMode.IMAGES, pages: str = "", image_budget: int = 280) -> PdfSurvey:
    """The chosen pages' count and their pictures' pixels, refused like `read_pdf` would refuse them."""
    document = _open(path, Path(path).name)
    try:
        numbers = _chosen(document, pages)
        if mode is PdfMode.TEXT:
            return PdfSurvey(len(numbers), 0)
        sizes = (_render_size(document.get_page_size(n - 1), image_budget) for n in numbers)
        return PdfSurvey(len(numbers), sum(width * height for width, height in sizes))
    finally:
        document.close()


def read_pdf(path: str | Path, mode: PdfMode = PdfMode.IMAGES, pages: str = "", image_budget: int = 280) -> list[PdfPage]:
    """The chosen pages of a PDF as pictures sized for `image_budget`, or as their text."""
    return list(pdf_pages(path, mode, pages, image_budget))


def page_count(path: str | Path) -> int:
    """How many pages a PDF has, read from its page tree: nothing is rendered."""
    document = _open(path, Path(path).name)
    try:
        return len(document)
    finally:
        document.close()


def pdf_pages(
    path: str | Path, mode: PdfMode = PdfMode.IMAGES, pages: str = "", image_budget: int = 280,
    text_layer: bool = False,
) -> Iterator[PdfPage]:
    """The chosen pages one at a time, each rendered only when it is asked for (and its PDFium page closed).

    The range is checked before the first page is rendered; a consumer that stops early
    renders nothing more. With `text_layer`, a page's picture comes with its own text ("" for a scan).
    """
    name = Path(path).name
    document = _open(path, name)
    try:
        numbers = _chosen(document, pages)
        if mode is PdfMode.TEXT:
            yield from _text_pages(document, numbers, name)
            return
        for number in numbers:
            page = document[number - 1]
            try:
                yield PdfPage(number, image=_render(page, image_budget), text=_page_text(page) if text_layer else "")
            finally:
                page.close()
    finally:
        document.close()


def _chosen(document: pdfium.PdfDocument, pages: str) -> list[int]:
    numbers = parse_page_range(pages, len(document))
    if len(numbers) > MAX_PAGES:
        raise InvalidInputError(
            f"{len(numbers)} pages were asked for; at most {MAX_PAGES} fit in one turn. Give a page range like \"1-10\"."
        )
    return numbers


def _open(path: str | Path, name: str) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as error:
        if error.err_code == pdfium.raw.FPDF_ERR_PASSWORD:
            raise InvalidInputError(
                f"{name} is encrypted with a password. Remove the password (print it to a new PDF) and upload it again."
            ) from None
        raise InvalidInputError(
            f"{name} could not be read as a PDF: it is damaged, incomplete or has no pages ({error}). "
            "Check that the file is a complete PDF with at least one page and upload it again."
        ) from None


def _render(page: pdfium.PdfPage, image_budget: int) -> Image.Image:
    """The page at about `image_budget` soft tokens' worth of pixels, on white."""
    return page.render(scale=_scale(page.get_size(), image_budget)).to_pil().convert("RGB")


def _scale(size: tuple[float, float], image_budget: int) -> float:
    width, height = size
    wanted = image_budget * PIXELS_PER_SOFT_TOKEN
    return min(MAX_RENDER_SCALE, math.sqrt(wanted / max(width * height, 1.0)))


def _render_size(size: tuple[float, float], image_budget: int) -> tuple[int, int]:
    """The rendered picture's size in pixels, as PDFium rounds it."""
    scale = _scale(size, image_budget)
    return math.ceil(size[0] * scale), math.ceil(size[1] * scale)


def _text_pages(document: pdfium.PdfDocument, numbers: list[int], name: str) -> list[PdfPage]:
    pages = [PdfPage(n, text=_page_text(document[n - 1])) for n in numbers]
    if not any(page.text for page in pages):
        raise InvalidInputError(
            f"{name} has no text layer on these pages (a scan or pictures of text). Choose “pages as images” instead."
        )
    return pages


def _page_text(page: pdfium.PdfPage) -> str:
    """The page's text layer, stripped. `get_text_bounded`, not `get_text_range`: the latter is UCS-2 only."""
    text_page = page.get_textpage()
    try:
        return text_page.get_text_bounded().strip()
    finally:
        text_page.close()


def page_parts(pages: Iterable[PdfPage]) -> list[dict]:
    """Message parts: each page's number as text beside its picture, or its text."""
    parts: list[dict] = []
    for page in pages:
        if page.image is not None:
            parts += [{"type": "text", "text": f"Page {page.number}:"}, {"type": "image", "image": page.image}]
        else:
            parts.append({"type": "text", "text": f"Page {page.number}:\n{page.text}"})
    return parts
