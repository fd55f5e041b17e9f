"""`/ocr_document` through `gradio_client`, as API and MCP clients meet it, and its ZeroGPU duration.

The model is scripted (`document_script.PagedBackend`: one real-shaped Markdown answer per
page, in order); upload, the document task, the downloads and errors are the real app.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from document_script import FEES_HEADERS, FEES_ROWS, PAGE_WORDS, PagedBackend, document_pdf
from scripted_backend import serve_scripted
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.tasks import ocr
from gemma_demo.ui import zerogpu

INPUT = Path(__file__).resolve().parent.parent / "input"
HEADING = re.compile(r"^## Page (\d+)", re.MULTILINE)


@pytest.fixture(scope="module")
def reading():
    backend = PagedBackend(delay_s=0)
    demo = serve_scripted(backend)
    yield Client(demo.local_url, verbose=False), backend
    demo.close()


def read(client: Client, files: list[Path], **options) -> tuple[list[tuple], tuple]:
    """Every streamed output of a document reading, and the last."""
    job = client.submit([handle_file(str(path)) for path in files], options.pop("mode", "markdown"),
                        api_name="/ocr_document", **options)
    partials = list(job)
    return partials, job.result()


def test_a_pdf_streams_page_by_page_into_markdown_json_and_a_table(reading, tmp_path):
    client, backend = reading
    asked = len(backend.prompts)
    partials, (rendered, raw, table, files, _, status) = read(client, [document_pdf(tmp_path)])

    assert [int(n) for n in HEADING.findall(raw)] == [1, 2, 3] == [int(n) for n in HEADING.findall(rendered)]
    assert "```" not in raw.split("## Page 2")[0]  # the first page's outer fence is dropped
    assert len(backend.prompts) == asked + 3 and "Convert this document to Markdown" in backend.prompts[-1]
    assert backend.settings[-1].image_budget == ocr.DEFAULT_SETTINGS.image_budget
    shown = [output[-1] for output in partials]
    assert any("page 2 of 3" in line for line in shown) and "3 pages read" in status
    table = table["value"] if table.get("__type__") == "update" else table
    assert table["headers"] == FEES_HEADERS and table["data"] == FEES_ROWS

    by_suffix = {Path(path).suffix: Path(path) for path in files}
    assert set(by_suffix) == {".md", ".json"} and by_suffix[".md"].name == "contract.md"
    assert by_suffix[".md"].read_text(encoding="utf-8") == raw
    document = json.loads(by_suffix[".json"].read_text(encoding="utf-8"))
    pages = document["pages"] if isinstance(document, dict) else document
    assert [entry["page"] for entry in pages] == [1, 2, 3]
    assert pages[1]["tables"] == [[FEES_HEADERS, *FEES_ROWS]] and pages[0]["tables"] == []
    assert all(entry["stats"]["prompt_tokens"] > 0 for entry in pages)


def test_several_pictures_are_the_pages_in_the_order_sent(reading, tmp_path):
    client, backend = reading
    pictures = [shutil.copy(INPUT / name, tmp_path / name) for name in ("shapes.jpg", "document.png")]
    asked = len(backend.prompts)
    _, (_, raw, _, files, _, status) = read(client, [Path(p) for p in pictures])
    assert [int(n) for n in HEADING.findall(raw)] == [1, 2] and "2 pages read" in status
    assert len(backend.prompts) == asked + 2
    assert {Path(path).name for path in files} == {"shapes.md", "shapes.json"}  # named after the first


def test_a_page_range_picks_the_pages(reading, tmp_path):
    client, backend = reading
    asked = len(backend.prompts)
    _, (_, raw, _, _, _, status) = read(client, [document_pdf(tmp_path, pages=5)], pages="2, 4-5")
    assert [int(n) for n in HEADING.findall(raw)] == [2, 4, 5] and "3 pages read" in status
    assert len(backend.prompts) == asked + 3


@pytest.mark.parametrize("pages, message", [("7", "outside the document"), ("two", "not a page range"),
                                            ("3-1", "outside the document")])
def test_a_bad_page_range_is_refused_with_a_reason_and_the_app_keeps_serving(reading, tmp_path, pages, message):
    client, backend = reading
    asked = len(backend.prompts)
    with pytest.raises(AppError, match=message):
        read(client, [document_pdf(tmp_path)], pages=pages)
    assert len(backend.prompts) == asked  # refused before any page was read
    _, (_, raw, _, _, _, _) = read(client, [document_pdf(tmp_path)], pages="1")
    assert HEADING.findall(raw) == ["1"]


def test_no_document_and_a_bad_text_layer_choice_are_refused(reading, tmp_path):
    client, _ = reading
    with pytest.raises(AppError, match="Upload a PDF or pictures"):
        read(client, [])
    with pytest.raises(AppError, match="instead"):  # the message names the choices
        read(client, [document_pdf(tmp_path)], text_layer="sideways")


def test_the_text_layer_is_shown_beside_or_used_instead(reading, tmp_path):
    client, backend = reading
    pdf = document_pdf(tmp_path)
    _, (rendered, _, _, files, _, _) = read(client, [pdf], text_layer="beside", pages="1")
    assert "Layer text of page 1" in rendered and any(word in rendered for word in PAGE_WORDS)  # both
    asked = len(backend.prompts)
    _, (rendered, raw, _, files, _, status) = read(client, [pdf], text_layer="instead")
    assert len(backend.prompts) == asked  # every page has a text layer: none is read by the model
    assert all(f"Layer text of page {n}" in raw for n in (1, 2, 3)) and "3 pages read" in status
    pages = json.loads(next(Path(p) for p in files if p.endswith(".json")).read_text(encoding="utf-8"))
    pages = pages["pages"] if isinstance(pages, dict) else pages
    assert {entry.get("source") for entry in pages} == {"text layer"}


def test_the_endpoint_takes_the_document_its_options_and_the_shared_settings(reading):
    """Its docstring describes each of them for API and MCP clients: `test_api.test_docstrings_describe_every_parameter`."""
    client, _ = reading
    endpoint = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/ocr_document"]
    names = [parameter["parameter_name"] for parameter in endpoint["parameters"]]
    assert names[:4] == ["document", "mode", "pages", "text_layer"]
    assert {"model", "max_new_tokens", "image_budget"} <= set(names)


def test_a_document_asks_zero_gpu_for_its_pages_up_to_the_ceiling(tmp_path):
    duration = zerogpu.duration_for("ocr_document")
    short = GenerationSettings(max_new_tokens=16)
    pdf = document_pdf(tmp_path, pages=6)
    one, all_pages = duration("tiny", short, [str(pdf)], "markdown", "1"), duration("tiny", short, [str(pdf)], "markdown", "")
    assert one == zerogpu.generation_seconds(short, pieces=1, frames=1)
    assert all_pages == zerogpu.generation_seconds(short, pieces=6, frames=6) > one
    pictures = [str(INPUT / "shapes.jpg"), str(INPUT / "document.png")]
    assert duration("tiny", short, pictures, "markdown", "") == zerogpu.generation_seconds(short, pieces=2, frames=2)
    assert duration("tiny", short, [str(pdf)], "markdown", "nonsense") == one  # refused by the task, not here
    long = GenerationSettings(max_new_tokens=4000)
    assert duration("tiny", long, [str(pdf)], "markdown", "") == zerogpu.MAX_DOCUMENT_SECONDS
