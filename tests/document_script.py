"""A scripted backend that reads documents: one real-shaped Markdown answer per page, in order.

Shared by the document tests of the page and of the API. Each OCR request gets the next
page's answer (the n-th request, page n, as the task sends pages in order); one page can be
held after its first piece until the test lets it go, to look at a document half read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gemma_demo.engine.base import Message, Stats, Update
from gemma_demo.engine.settings import GenerationSettings
from pdf_factory import text_pdf
from scripted_backend import ScriptedBackend, prompt_text

# `input/contract.pdf` read as Gemma 4 answers the Markdown prompt: the first page wrapped in a
# fence (the task drops it), the fees as a table on the second.
PAGE_ANSWERS = (
    "```markdown\n# Service Agreement\n\nBetween **Northwind Analytics Ltd** (the Provider) and **Harbour Street "
    "Bakery** (the Client), dated 3 March 2025.\n\n## 1. Services\n\nThe Provider keeps the Client's ordering "
    "system running and answers support requests on working days, 9:00 to 17:00.\n\n## 2. Term\n\nThis agreement "
    "runs for twelve months from the date above and renews for another twelve unless either party ends it.\n```",
    "## 3. Fees\n\nThe Client pays the following fees each month, plus VAT:\n\n| Service | Hours | Monthly fee |\n"
    "| --- | --- | --- |\n| Hosting | - | 120.00 |\n| Support | 10 | 450.00 |\n| Backups | - | 35.00 |\n"
    "| Total |  | 605.00 |\n\nInvoices are due within 30 days of their date.",
    "## 4. Confidentiality\n\nEach party keeps the other's business information secret during this agreement and "
    "for three years after it ends.\n\n## 5. Ending the agreement\n\nEither party may end this agreement with 60 "
    "days' written notice. Fees for the notice period remain due.",
    "## 6. Signatures\n\n- Signed for the Provider: **Ada Moreau**, Director\n- Signed for the Client: "
    "**Tom Baker**, Owner\n- Date: 3 March 2025",
)
FEES_HEADERS = ["Service", "Hours", "Monthly fee"]
FEES_ROWS = [["Hosting", "-", "120.00"], ["Support", "10", "450.00"], ["Backups", "-", "35.00"], ["Total", "", "605.00"]]
PAGE_WORDS = ("Service Agreement", "Fees", "Confidentiality", "Signatures")  # a heading of each page's answer
DOCUMENT_PAGES = 3  # the tests' own PDFs; the sample has 4
HOLD_CEILING_S = 120.0  # a held page gives up waiting after this: a ceiling, never a pace


def document_pdf(folder: Path, pages: int = DOCUMENT_PAGES, name: str = "contract.pdf") -> Path:
    """A PDF of `pages` pages, each with a text layer reading "Layer text of page N"."""
    path = folder / name
    path.write_bytes(text_pdf([f"Layer text of page {n}" for n in range(1, pages + 1)]))
    return path


def _flowing() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


@dataclass
class PagedBackend(ScriptedBackend):
    """Answers the n-th request with `PAGE_ANSWERS[n - 1]` (round again past the last).

    With `hold_page` set, that request waits after its first piece until `flowing` is set;
    `holding` says it got there, `stopped` that a stream was closed before its end.
    """

    delay_s: float = 0.005
    updates: int = 6
    hold_page: int | None = None
    flowing: threading.Event = field(default_factory=_flowing)
    holding: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hold(self, page: int) -> None:
        """Hold the `page`-th request from now on (counted from the next one sent as 1)."""
        self.hold_page = len(self.prompts) + page
        self.flowing.clear()
        self.holding.clear()
        self.stopped.clear()

    def release(self) -> None:
        """Hold no page from now on."""
        self.hold_page = None
        self.flowing.set()

    def stream(self, messages: list[Message], settings: GenerationSettings) -> Iterator[Update]:
        with self._lock:
            self.prompts.append(prompt_text(messages))
            self.settings.append(settings)
            number = len(self.prompts)
        answer = PAGE_ANSWERS[(number - 1) % len(PAGE_ANSWERS)]
        size = -(-len(answer) // self.updates)
        started, stats = time.perf_counter(), Stats()
        try:
            for end in range(size, len(answer) + size, size):
                time.sleep(self.delay_s)
                stats = Stats(settings.image_budget, end // size, self.delay_s, time.perf_counter() - started)
                yield Update(answer=answer[:end], stats=stats)
                if number == self.hold_page:
                    self.holding.set()
                    self.flowing.wait(HOLD_CEILING_S)
        except GeneratorExit:
            self.stopped.set()
            raise
        yield Update(answer=answer, stats=stats, done=True)
