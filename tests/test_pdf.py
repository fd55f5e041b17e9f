"""PDF documents in the chat: pages as pictures or as text, page ranges, and files that cannot be read."""

from __future__ import annotations

from pathlib import Path

import pytest

from gemma_demo.engine.local import build_inputs
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.errors import InvalidInputError
from gemma_demo.media.pdf import PdfMode, parse_page_range, pdf_pages, read_pdf, survey_pdf
from gemma_demo.tasks.conversation import ChatOptions, model_messages
from gemma_demo.tasks.chat import user_message
from pdf_factory import BROKEN_PDF, empty_pdf, encrypted_pdf, text_pdf

REPORT = Path(__file__).resolve().parent.parent / "input" / "report.pdf"


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "notes.pdf"
    path.write_bytes(text_pdf(["Alpha page", "Beta page", "Gamma page"]))
    return path


def prompt_of(backend, path: Path, options: ChatOptions, question: str = "Summarise.") -> tuple[str, int]:
    """The decoded prompt and the number of pictures in it (runs of image tokens)."""
    messages = model_messages([user_message(question, [path])], backend.capabilities, backend.name, options)
    ids = build_inputs(backend.processor, messages, GenerationSettings())["input_ids"][0].tolist()
    image = backend.processor.tokenizer.convert_tokens_to_ids(backend.processor.image_token)
    pictures = sum(1 for i, token in enumerate(ids) if token == image and (i == 0 or ids[i - 1] != image))
    return backend.processor.tokenizer.decode(ids), pictures


def test_the_sample_report_gives_three_page_pictures_each_after_its_number(tiny_backend):
    text, pictures = prompt_of(tiny_backend, REPORT, ChatOptions())
    assert pictures == 3
    assert text.index("Page 1:") < text.index("Page 2:") < text.index("Page 3:") < text.index("Summarise.")


def test_a_page_range_picks_those_pages_only(tiny_backend):
    text, pictures = prompt_of(tiny_backend, REPORT, ChatOptions(pdf_pages="1, 3"))
    assert pictures == 2 and "Page 2:" not in text and "Page 3:" in text


def test_the_text_layer_gives_the_pdfs_own_words_and_no_pictures(tiny_backend, text_file):
    text, pictures = prompt_of(tiny_backend, text_file, ChatOptions(pdf_mode=PdfMode.TEXT, pdf_pages="2-3"))
    assert pictures == 0
    assert "Page 2:\nBeta page" in text and "Gamma page" in text and "Alpha" not in text


def test_pages_are_rendered_for_the_image_budget():
    small = read_pdf(REPORT, pages="1", image_budget=70)[0].image
    large = read_pdf(REPORT, pages="1", image_budget=1120)[0].image
    assert small.width * small.height < 70 * 48 * 48 * 1.1
    assert large.width * large.height > 10 * small.width * small.height


def test_page_ranges_are_parsed_and_checked():
    assert parse_page_range("1-3, 7", 9) == [1, 2, 3, 7]
    assert parse_page_range(" ", 2) == [1, 2]
    for bad in ("0", "3-1", "1-10", "two"):
        with pytest.raises(InvalidInputError, match="page"):
            parse_page_range(bad, 9)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (encrypted_pdf(), "encrypted with a password"),
        (BROKEN_PDF, "could not be read as a PDF"),
        (b"", "could not be read as a PDF"),
        (empty_pdf(), "has no pages"),
    ],
)
@pytest.mark.parametrize("reader", [read_pdf, survey_pdf])
def test_unreadable_pdfs_get_a_clear_message(tmp_path, data, message, reader):
    path = tmp_path / "upload.pdf"
    path.write_bytes(data)
    with pytest.raises(InvalidInputError, match=message):
        reader(path)


def test_a_pdf_of_pictures_has_no_text_layer_and_says_what_to_do_instead():
    with pytest.raises(InvalidInputError, match="pages as images"):
        read_pdf(REPORT, PdfMode.TEXT)


def test_pages_are_rendered_one_at_a_time_as_they_are_asked_for(renders):
    pages = pdf_pages(REPORT)
    assert renders == []
    assert next(pages).number == 1 and len(renders) == 1
    pages.close()
    assert len(renders) == 1


@pytest.mark.parametrize(("budget", "pages"), [(70, ""), (280, "2-3"), (1120, "3")])
def test_the_survey_gives_the_page_pictures_pixels_without_rendering_them(renders, budget, pages):
    survey = survey_pdf(REPORT, pages=pages, image_budget=budget)
    assert renders == []
    pictures = [page.image for page in read_pdf(REPORT, pages=pages, image_budget=budget)]
    assert (survey.pages, survey.pixels) == (len(pictures), sum(p.width * p.height for p in pictures))
    assert survey_pdf(REPORT, PdfMode.TEXT, pages).pixels == 0
