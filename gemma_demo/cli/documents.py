"""`ocr` over documents: each PDF (or, with `--document`, the pictures given) read page by page.

One JSON line per page, in page order, as each page finishes, so a script can follow a long
document; a document that cannot be read (a bad range, over the page cap, unreadable) gets
one error line instead, and the run exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from gemma_demo.engine.base import Backend
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.errors import GemmaDemoError
from gemma_demo.tasks.ocr_document import DocumentRequest, TextLayer, is_pdf, read_document


def add_document_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pages", default="", help='PDF pages (or pictures) to read, e.g. "1-3, 5" (default: all)')
    parser.add_argument("--text-layer", choices=[layer.value for layer in TextLayer], default=TextLayer.OFF.value,
                        help="a PDF page's own text: shown beside the reading, or read instead of the page")
    parser.add_argument("--document", action="store_true", help="read the pictures given as the pages of one document")


def reads_documents(files: list[Path], args: argparse.Namespace) -> bool:
    """Whether `ocr` reads these inputs page by page rather than one picture per line."""
    return args.document or any(is_pdf(path) for path in files)


def document_groups(files: list[Path], together: bool) -> list[tuple[Path, ...]]:
    """Each PDF alone; the pictures each alone, or (`together`) consecutive ones as one document."""
    groups: list[tuple[Path, ...]] = []
    for path in files:
        if together and not is_pdf(path) and groups and not is_pdf(groups[-1][0]):
            groups[-1] += (path,)
        else:
            groups.append((path,))
    return groups


def run_documents(files: list[Path], args: argparse.Namespace, settings: GenerationSettings,
                  backend: Callable[[], Backend], mode: str) -> bool:
    """Print every page's line; whether every document was read whole."""
    ok = True
    for sources in document_groups(files, args.document):
        try:
            request = DocumentRequest(sources, mode, args.pages or None, args.text_layer, settings)
            _print_pages(backend(), request)
        except GemmaDemoError as error:
            ok = False
            print(f"error: {sources[0]}: {error}", file=sys.stderr)
            print(json.dumps({"file": str(sources[0]), "error": str(error)}, ensure_ascii=False), flush=True)
    return ok


def _print_pages(backend: Backend, request: DocumentRequest) -> None:
    pdf = request.pdf
    shown = ""
    for progress in read_document(backend, request):
        if progress.page is not None and progress.status != shown:
            shown = progress.status
            print(f"{request.sources[0]}: {shown}", file=sys.stderr, flush=True)
        page = progress.finished
        if page is not None:
            source = pdf if pdf is not None else request.sources[page.page - 1]
            line = {"file": str(source), "mode": request.mode.value, **page.to_json()}
            print(json.dumps(line, ensure_ascii=False), flush=True)
