"""Documents read page by page: order, headings, tables, Stop, ranges, the page cap, text layers,
the CLI's lines, the agent tool, and another visitor's turn between pages (on the tiny model)."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from agent_helpers import QueuedBackend
from PIL import Image
from pdf_factory import text_pdf

from gemma_demo.cli.main import EXIT_FAILED_INPUT, EXIT_OK, main
from gemma_demo.engine.base import Stats, Update
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.registry import SMALL
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.engine.tool_syntax import write_call
from gemma_demo.errors import InvalidInputError
from gemma_demo.media.pdf import pdf_pages
from gemma_demo.tasks.agent import StepKind, run_agent
from gemma_demo.tasks.budget import MediaLimits
from gemma_demo.tasks.ocr import DEFAULT_SETTINGS, OcrMode
from gemma_demo.tasks.ocr_document import DocumentRequest, PageSource, read_document, to_json, to_markdown
from gemma_demo.tasks.tools.base import ToolContext
from gemma_demo.tasks.tools.catalog import toolbox

INPUT = Path(__file__).resolve().parents[1] / "input"
CEILING_S = 60.0  # waits for an event: a ceiling, never a pace
FEES = "| Service | Monthly fee |\n| --- | --- |\n| Hosting | 120.00 |\n| Support | 450.00 |"
# As Gemma 4 answers the Markdown prompt: page 1 in a fence, a table on page 2.
ANSWERS = ("```markdown\n# Service Agreement\n\nBetween **Northwind** and **Harbour Street**.\n```",
           f"## Fees\n\n{FEES}", "## Signatures\n\nSigned on 3 March 2025.")


@dataclass
class PageBackend:
    """Answers each page from its picture (so order is checked whatever the threads do), in pieces.

    A page whose answer is `hold` waits after its first piece until `release` is set.
    """

    answers: dict[bytes, str]
    name: str = "pages"
    capabilities: object = SMALL
    hold: str | None = None
    release: threading.Event = field(default_factory=threading.Event)
    asked: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)  # streams read to their end, not closed before it
    ended: defaultdict[str, threading.Event] = field(default_factory=lambda: defaultdict(threading.Event))

    def stream(self, messages, settings: GenerationSettings) -> Iterator[Update]:
        picture = next(part["image"] for part in messages[0]["content"] if part["type"] == "image")
        answer = self.answers[picture.tobytes()]
        self.asked.append(answer)
        try:
            for end in (len(answer) // 2, len(answer)):
                if answer == self.hold and end == len(answer):
                    self.release.wait(CEILING_S)
                yield Update(answer[:end], stats=Stats(settings.image_budget, end), done=end == len(answer))
            self.completed.append(answer)
        finally:
            self.ended[answer].set()


@pytest.fixture()
def contract(tmp_path) -> Path:
    path = tmp_path / "contract.pdf"
    path.write_bytes(text_pdf(["Layer one", "Layer two", "Layer three"]))
    return path


@pytest.fixture()
def backend(contract) -> PageBackend:
    pictures = [page.image.tobytes() for page in pdf_pages(contract, image_budget=DEFAULT_SETTINGS.image_budget)]
    return PageBackend(dict(zip(pictures, ANSWERS)))


def read_all(backend, request: DocumentRequest, **limits) -> list:
    return list(read_document(backend, request, limits=MediaLimits(**limits)))


def test_pages_come_in_order_under_headings_with_their_tables(backend, contract):
    progress = read_all(backend, DocumentRequest((contract,)))
    final = progress[-1]
    assert final.done and [page.page for page in final.pages] == [1, 2, 3]
    assert [p.finished.page for p in progress if p.finished] == [1, 2, 3]  # each as it finished, in order
    first, fees, _ = final.pages
    assert first.text.startswith("# Service Agreement") and "```" not in first.text  # the fence dropped
    assert fees.tables == ([["Service", "Monthly fee"], ["Hosting", "120.00"], ["Support", "450.00"]],)
    markdown = to_markdown(final.pages)
    headings = [markdown.index(f"## Page {n}\n") for n in (1, 2, 3)]
    assert headings == sorted(headings) and markdown.index(FEES) > headings[1]
    data = to_json(final.pages)
    assert [page["page"] for page in data["pages"]] == [1, 2, 3]
    assert data["pages"][1]["tables"] == [[["Service", "Monthly fee"], ["Hosting", "120.00"], ["Support", "450.00"]]]
    assert data["pages"][0]["stats"]["new_tokens"] == len(ANSWERS[0])
    json.dumps(data)  # a download: plain data only


def test_progress_says_which_page_is_read_and_shows_its_text_so_far(backend, contract):
    progress = read_all(backend, DocumentRequest((contract,), pages="2-3"))
    reading = [p for p in progress if p.finished is None and not p.done]
    assert [p.status for p in reading] == ["page 1 of 2 (page 2 of the document)", "page 2 of 2 (page 3 of the document)"]
    assert reading[0].partial == ANSWERS[1][: len(ANSWERS[1]) // 2]
    assert [p.status for p in progress if p.finished] == [p.status for p in reading]  # the page just read
    assert progress[-1].status == "2 pages read"


def test_a_range_reads_only_its_pages(backend, contract):
    final = read_all(backend, DocumentRequest((contract,), pages="3, 1"))[-1]
    assert [page.page for page in final.pages] == [1, 3] and sorted(backend.asked) == sorted([ANSWERS[0], ANSWERS[2]])


@pytest.mark.parametrize("pages, message", [("0", "outside the document"), ("2-5", "outside the document"),
                                            ("two", "is not a page range")])
def test_a_bad_range_is_refused_before_any_page_is_read(backend, contract, renders, pages, message):
    with pytest.raises(InvalidInputError, match=message):
        next(read_document(backend, DocumentRequest((contract,), pages=pages)))
    assert backend.asked == [] and renders == []


def test_over_the_page_cap_is_refused_from_the_header_before_rendering(backend, contract, renders):
    with pytest.raises(InvalidInputError, match=r"3 pages were asked for.*at most 2.*--chat-max-pages.*\"1-2\""):
        read_all(backend, DocumentRequest((contract,)), pages=2)
    assert backend.asked == [] and renders == []
    assert len(read_all(backend, DocumentRequest((contract,), pages="1-2"), pages=2)[-1].pages) == 2


def test_stop_keeps_the_pages_read_and_closes_the_pages_in_flight(backend, contract):
    backend.hold = ANSWERS[1]
    reading = read_document(backend, DocumentRequest((contract,)))
    kept = ()
    for progress in reading:
        kept = progress.pages
        if progress.page == 2 and progress.finished is None:
            break  # page 2 half read: Stop
    reading.close()
    assert [page.page for page in kept] == [1]
    backend.release.set()
    assert backend.ended[ANSWERS[1]].wait(CEILING_S)
    assert ANSWERS[1] not in backend.completed  # its stream was closed, which is what stops the model


def test_the_text_layer_is_shown_beside_the_reading(backend, contract):
    final = read_all(backend, DocumentRequest((contract,), text_layer="beside"))[-1]
    assert [(page.text_layer, page.source) for page in final.pages] == [
        ("Layer one", PageSource.OCR), ("Layer two", PageSource.OCR), ("Layer three", PageSource.OCR)]
    assert "### Text layer of page 2\n\n```text\nLayer two\n```" in to_markdown(final.pages)
    off = read_all(backend, DocumentRequest((contract,)))[-1]
    assert {page.text_layer for page in off.pages} == {None} and "Text layer" not in to_markdown(off.pages)


def test_the_text_layer_stands_in_for_the_reading_where_a_page_has_one(backend, contract, tmp_path):
    final = read_all(backend, DocumentRequest((contract,), text_layer="instead"))[-1]
    assert [(page.text, page.source) for page in final.pages] == [
        ("Layer one", PageSource.TEXT_LAYER), ("Layer two", PageSource.TEXT_LAYER), ("Layer three", PageSource.TEXT_LAYER)]
    assert backend.asked == []
    scan = tmp_path / "scan.pdf"  # Pillow writes pages as pictures: no text layer, so the page is read
    Image.new("RGB", (300, 400), "white").save(scan)
    picture = next(pdf_pages(scan, image_budget=DEFAULT_SETTINGS.image_budget)).image.tobytes()
    page = read_all(PageBackend({picture: "Read."}), DocumentRequest((scan,), text_layer="instead"))[-1].pages[0]
    assert (page.text, page.source, page.text_layer) == ("Read.", PageSource.OCR, None)


def test_pictures_are_the_pages_in_the_order_given(tmp_path):
    paths, answers = [], {}
    for number, colour in enumerate(("red", "green", "blue"), start=1):
        paths.append(tmp_path / f"scan-{number}.png")
        Image.new("RGB", (64, 48), colour).save(paths[-1])
        answers[Image.open(paths[-1]).convert("RGB").tobytes()] = f"Page {number} ({colour})"
    final = read_all(PageBackend(answers), DocumentRequest(tuple(paths), mode=OcrMode.TEXT))[-1]
    assert [page.text for page in final.pages] == ["Page 1 (red)", "Page 2 (green)", "Page 3 (blue)"]
    assert final.pages[0].markdown == "```text\nPage 1 (red)\n```"  # plain text fenced, as the OCR tab shows it


def test_a_bad_picture_is_refused_before_the_pages_before_it_are_read(tmp_path):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    Image.new("RGB", (64, 48), "red").save(good)
    bad.write_bytes(b"not a picture")
    backend = PageBackend({})
    with pytest.raises(InvalidInputError, match="bad.png"):
        read_all(backend, DocumentRequest((good, bad)))
    assert backend.asked == []


@pytest.mark.parametrize("sources, changes, message", [
    (("a.pdf", "b.png"), {}, "Read one PDF at a time"),
    ((), {}, "No document was given"),
    (("a.pdf",), {"text_layer": "under"}, "text_layer 'under' is not one of"),
])
def test_requests_that_make_no_sense_are_refused(sources, changes, message):
    with pytest.raises(InvalidInputError, match=message):
        DocumentRequest(sources, **changes)


# The CLI: one JSON line per page, in order; a bad document is an error line and exit 1.


@pytest.fixture()
def cli_backend(monkeypatch, backend) -> PageBackend:
    monkeypatch.setattr(ModelCache, "get", lambda self, name, options: backend)
    return backend


def run_cli(capsys, *argv: str) -> tuple[int, list[dict]]:
    code = main(["ocr", *argv])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_the_cli_prints_a_line_per_page_in_order(capsys, cli_backend, contract):
    code, lines = run_cli(capsys, str(contract), "--text-layer", "beside")
    assert code == EXIT_OK and [line["page"] for line in lines] == [1, 2, 3]
    assert {line["file"] for line in lines} == {str(contract)} and lines[1]["tables"][0][0] == ["Service", "Monthly fee"]
    assert lines[2]["text_layer"] == "Layer three" and lines[0]["text"].startswith("# Service Agreement")


@pytest.mark.parametrize("extra, message", [(["--pages", "7"], "outside the document"),
                                            (["--pages", "x"], "is not a page range")])
def test_the_cli_refuses_a_bad_range_with_an_error_line(capsys, cli_backend, contract, extra, message):
    code, lines = run_cli(capsys, str(contract), *extra)
    assert code == EXIT_FAILED_INPUT and len(lines) == 1 and message in lines[0]["error"]
    assert cli_backend.asked == []


def test_the_cli_refuses_an_unreadable_pdf_and_goes_on_with_the_next(capsys, cli_backend, contract, tmp_path):
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog")
    code, lines = run_cli(capsys, str(broken), str(contract), "--pages", "1")
    assert code == EXIT_FAILED_INPUT
    assert "could not be read as a PDF" in lines[0]["error"] and lines[1]["page"] == 1


def test_the_cli_reads_pictures_as_one_document_when_asked(capsys, monkeypatch, tmp_path):
    paths = []
    for number, colour in enumerate(("red", "blue"), start=1):
        paths.append(tmp_path / f"{number}.png")
        Image.new("RGB", (64, 48), colour).save(paths[-1])
    answers = {Image.open(path).convert("RGB").tobytes(): f"Page {n}" for n, path in enumerate(paths, start=1)}
    monkeypatch.setattr(ModelCache, "get", lambda self, name, options: PageBackend(answers))
    code, lines = run_cli(capsys, *map(str, paths), "--document")
    assert code == EXIT_OK and [(line["page"], line["file"], line["text"]) for line in lines] == [
        (1, str(paths[0]), "Page 1"), (2, str(paths[1]), "Page 2")]


# The agent's tool over the conversation's PDFs.


def test_the_agent_reads_an_attached_pdf_page_by_page(tmp_path):
    pdf = tmp_path / "contract.pdf"
    pdf.write_bytes(text_pdf(["one", "two"]))
    model = QueuedBackend().enqueue(write_call("read_document", {"attachment": "contract.pdf", "pages": "2"}),
                                    f"## Fees\n\n{FEES}", "Hosting costs 120.00 a month.")
    context = ToolContext(backend=model, attachments=(INPUT / "shapes.jpg", pdf))
    steps = list(run_agent(model, [{"role": "user", "content": "What does hosting cost?"}], toolbox(["read_document"]),
                           GenerationSettings(), context))
    (step,) = [s for s in steps if s.kind is StepKind.TOOL]
    assert step.result.response == {"pages": [{"page": 2, "markdown": f"## Fees\n\n{FEES}"}]}
    assert model.requests[1][1].image_budget == DEFAULT_SETTINGS.image_budget


def test_the_agent_tool_refuses_a_picture():
    model = QueuedBackend().enqueue(write_call("read_document", {"attachment": "0"}), "Sorry.")
    context = ToolContext(backend=model, attachments=(INPUT / "shapes.jpg",))
    steps = list(run_agent(model, [{"role": "user", "content": "Read it"}], toolbox(["read_document"]),
                           GenerationSettings(), context))
    (step,) = [s for s in steps if s.kind is StepKind.TOOL]
    assert "shapes.jpg is not a PDF" in step.result.response["error"]


# Another visitor, on the real scheduler: served once the page being read is done.


def test_another_visitor_waits_for_at_most_the_page_being_read(tiny_backend, tmp_path, endless):
    pdf = tmp_path / "long.pdf"
    pdf.write_bytes(text_pdf([f"Page {n}" for n in range(1, 7)]))
    request = DocumentRequest((pdf,), settings=DEFAULT_SETTINGS.with_changes(max_new_tokens=24, image_budget=280))
    finished: list[int] = []
    visitor_first_token = threading.Event()
    pages_done_then: list[int] = []

    def visitor() -> None:
        picture = Image.new("RGB", (64, 64), "red")
        messages = [{"role": "user", "content": [{"type": "image", "image": picture}, {"type": "text", "text": "Hi"}]}]
        for update in tiny_backend.stream(messages, GenerationSettings(max_new_tokens=4, image_budget=70)):
            if update.stats.new_tokens and not visitor_first_token.is_set():
                pages_done_then.append(len(finished))
                visitor_first_token.set()

    thread = None
    for progress in read_document(tiny_backend, request):
        if progress.finished is not None:
            finished.append(progress.finished.page)
        if progress.page == 1 and thread is None:  # page 1 is sent: the visitor comes
            sent_with = len(finished)
            thread = threading.Thread(target=visitor)
            thread.start()
    thread.join(CEILING_S)
    assert finished == [1, 2, 3, 4, 5, 6] and visitor_first_token.is_set()
    assert pages_done_then[0] <= sent_with + 1
