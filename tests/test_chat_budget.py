"""Issue 22, item 2: one chat request cannot take all the memory.

Every turn expands the whole conversation again, so the budget is checked over the
whole history, from the files' headers, before any page is rendered or any sound decoded;
a refusal names the numbers, and the app answers the next request. The API test is the
issue's reproduction: three 100-page PDFs in one turn, two sessions.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
import soundfile as sf
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from app_helpers import generating, wait_until
from audio_factory import sine
from gemma_demo.config import parse_app_args
from gemma_demo.engine.base import Update
from gemma_demo.engine.registry import SMALL, ModelCapabilities
from gemma_demo.errors import InvalidInputError
from gemma_demo.media import audio
from gemma_demo.media.pdf import PdfMode
from gemma_demo.tasks import conversation
from gemma_demo.tasks.budget import MediaLimits
from gemma_demo.tasks.chat import answer_messages, user_message
from gemma_demo.tasks.conversation import ChatOptions, model_messages
from pdf_factory import text_pdf

INPUT = Path(__file__).resolve().parent.parent / "input"
REPORT = INPUT / "report.pdf"  # three pages
TINY_TOKENS = 6
SERVER_PAGES = 250  # the API test's app: --chat-max-pages 250, under the 300 pages


@pytest.fixture(scope="module")
def long_pdfs(tmp_path_factory) -> list[Path]:
    """The issue's turn: three 100-page PDFs of about 27 KB each."""
    folder = tmp_path_factory.mktemp("pdfs")
    paths = [folder / f"book-{n}.pdf" for n in range(3)]
    for number, path in enumerate(paths):
        path.write_bytes(text_pdf([f"Book {number}, page {page}" for page in range(1, 101)]))
    return paths


def answered(*messages: dict) -> list[dict]:
    """A history in which each user message got an answer."""
    history: list[dict] = []
    for message in messages:
        history += [message, *answer_messages(Update(answer="Noted.", done=True))]
    return history


def test_a_turn_over_the_page_budget_is_refused_with_the_numbers_before_any_page_is_rendered(long_pdfs, renders):
    turn = [user_message("Summarise the three books.", long_pdfs)]
    with pytest.raises(InvalidInputError) as refusal:
        model_messages(turn, SMALL, "tiny")
    message = str(refusal.value)
    assert message.startswith("This message holds 300 PDF pages as pictures, but one chat request may hold at "
                              "most 117 PDF pages as pictures (the vision encoder takes 32,768 soft tokens at "
                              "once, and a page takes 280 at this image budget)")
    assert "Nothing was decoded or generated" in message and "“Text layer”" in message
    assert renders == []
    # Within the budget the same pages are rendered: the spy does see rendering.
    assert len(model_messages(turn, SMALL, "tiny", ChatOptions(pdf_pages="1-2"))[0]["content"]) == 3 * 2 * 2 + 1
    assert len(renders) == 6


def test_a_history_over_the_budget_is_refused_even_when_the_new_message_is_small(renders):
    options = ChatOptions(limits=MediaLimits(pages=5))
    first = user_message("Read this.", [REPORT])
    assert len(model_messages([first], SMALL, "tiny", options)[0]["content"]) == 3 * 2 + 1  # 3 pages alone fit
    rendered = len(renders)
    with pytest.raises(InvalidInputError, match=r"^This conversation holds 6 PDF pages as pictures \(3 PDF pages as "
                       r"pictures in this message\), but one chat request may hold at most 5 PDF pages as pictures "
                       r"\(the limit this server sets \(--chat-max-pages\)\)\. Every turn sends the whole conversation"):
        model_messages([*answered(first), user_message("And this one?", [REPORT])], SMALL, "tiny", options)
    with pytest.raises(InvalidInputError, match=r"^This conversation already holds 6 PDF pages as pictures, "):
        model_messages([*answered(first, first), user_message("Compare them.")], SMALL, "tiny", options)
    assert len(renders) == rendered


def test_pages_as_text_cost_no_page_pictures(tmp_path, renders):
    book = tmp_path / "book.pdf"
    book.write_bytes(text_pdf(["One", "Two", "Three"]))
    options = ChatOptions(pdf_mode=PdfMode.TEXT, limits=MediaLimits(pages=1))
    parts = model_messages([user_message("Read this.", [book])], SMALL, "tiny", options)[0]["content"]
    assert [p["type"] for p in parts] == ["text"] * 4
    assert renders == []


def write_tone(path: Path, seconds: int) -> Path:
    """A 16 kHz tone, written a second at a time."""
    with sf.SoundFile(path, "w", 16_000, 1, subtype="PCM_16", format="WAV") as out:
        second = sine(440.0, 1.0)
        for _ in range(seconds):
            out.write(second)
    return path


def traced_peak(run) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_audio_over_the_context_is_refused_from_its_header_with_almost_no_memory(tmp_path):
    """A 4,096-token context holds 163 s of audio at 25 tokens a second; 200 s decode to 12.8 MB."""
    path = write_tone(tmp_path / "lecture.wav", 200)
    small = ModelCapabilities(audio=True, context_tokens=4096)
    refusals = []

    def ask():
        with pytest.raises(InvalidInputError) as refusal:
            model_messages([user_message("Summarise.", [path])], small, "tiny")
        refusals.append(str(refusal.value))

    peak = traced_peak(ask)
    assert refusals[0].startswith("This message holds 3 min 20 s of audio, but one chat request may hold at most "
                                  "2 min 43 s of audio (about 25 tokens a second must fit in tiny's context of "
                                  "4,096 tokens)")
    assert peak < 200 * 16_000 * 4 / 20


def test_audio_whose_header_says_less_is_decoded_no_further_than_the_budget(tmp_path, monkeypatch):
    path = write_tone(tmp_path / "unfinished.wav", 90)
    monkeypatch.setattr(conversation, "audio_seconds", lambda source: 1.0)  # as an estimated duration may be
    options = ChatOptions(limits=MediaLimits(audio_minutes=0.5))
    decoded = []
    real = audio._resampled

    def counted(rate, blocks):
        for block in real(rate, blocks):
            decoded.append(len(block))
            yield block

    monkeypatch.setattr(audio, "_resampled", counted)
    with pytest.raises(InvalidInputError, match=r"^unfinished.wav holds more audio than its header says: over "
                       r"30.0 s with the conversation's other audio, the most one chat request may hold"):
        model_messages([user_message("Summarise.", [path])], SMALL, "tiny", options)
    assert 30 * 16_000 < sum(decoded) <= 30 * 16_000 + audio.READ_BLOCK_SECONDS * 16_000


def test_pictures_are_measured_from_their_headers(tmp_path, monkeypatch):
    big = tmp_path / "wall.png"
    Image.new("RGB", (4000, 3000), "white").save(big)  # 12 MP, a few KB on disk
    loads = []
    monkeypatch.setattr(Image.Image, "load", lambda image: loads.append(1))
    options = ChatOptions(limits=MediaLimits(megapixels=20))
    with pytest.raises(InvalidInputError, match=r"^This message holds 24.0 megapixels of pictures, but one chat "
                       r"request may hold at most 20.0 megapixels of pictures"):
        model_messages([user_message("Compare.", [big, big])], SMALL, "tiny", options)
    assert loads == []


def test_the_memory_limit_follows_the_memory_available_now(monkeypatch):
    monkeypatch.setattr(conversation, "available_memory", lambda: 200 * 1024**2)
    turn = [user_message("Read this.", [REPORT, REPORT])]  # 6 pages: about 56 MiB decoded, with the processor's tensors
    with pytest.raises(InvalidInputError, match=r"^This message holds about 56 MiB of decoded media, but one chat "
                       r"request may hold at most about 50 MiB of decoded media \(a quarter of the 200 MiB this "
                       r"machine has available now\)"):
        model_messages(turn, SMALL, "tiny")
    monkeypatch.setattr(conversation, "available_memory", lambda: 240 * 1024**2)
    assert len(model_messages(turn, SMALL, "tiny")[0]["content"]) == 6 * 2 + 1


def test_the_flags_and_variables_set_the_limits():
    assert parse_app_args([]).chat_limits == MediaLimits()
    flags = ["--chat-max-pages", "20", "--chat-max-megapixels", "50", "--chat-max-audio-minutes", "2.5",
             "--chat-max-video-frames", "64", "--chat-media-memory", "2GiB"]
    assert parse_app_args(flags).chat_limits == MediaLimits(20, 50.0, 2.5, 64, 2048)
    env = {"GEMMA_DEMO_CHAT_MAX_PAGES": "7", "GEMMA_DEMO_CHAT_MEDIA_MEMORY": "512MiB"}
    assert parse_app_args([], env).chat_limits == MediaLimits(pages=7, memory_mib=512)
    assert parse_app_args(["--chat-max-pages", "9"], env).chat_limits.pages == 9


# --- through the API: the reproduction with two sessions ------------------------------


@pytest.fixture(scope="module")
def app(tiny_options):
    from app_helpers import serve

    demo = serve(tiny_options, chat_limits=MediaLimits(pages=SERVER_PAGES))
    yield demo
    demo.close()


def say(client: Client, text: str, files=()) -> list[dict]:
    message = {"text": text, "files": [handle_file(f) for f in files]}
    history, _, stats = client.predict(message, [], api_name="/chat", max_new_tokens=TINY_TOKENS, sampling="off")
    assert " new tokens" in stats
    return history


def test_a_300_page_turn_is_refused_and_both_sessions_are_answered_after_it(app, long_pdfs, renders):
    first, second = Client(app.local_url, verbose=False), Client(app.local_url, verbose=False)
    with pytest.raises(AppError, match=rf"This message holds 300 PDF pages as pictures, but one chat request may "
                       rf"hold at most {SERVER_PAGES} PDF pages as pictures \(the limit this server sets"):
        say(first, "Summarise the three books.", long_pdfs)
    assert renders == []
    assert wait_until(lambda: not generating())
    assert say(second, "Hello from the other session")[0]["content"][0]["text"] == "Hello from the other session"
    assert say(first, "Hello again")[-1]["role"] == "assistant"
