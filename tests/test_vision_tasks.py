"""The image tasks end to end: scripted Gemma 4 answers for parsing, the tiny model for the real path."""

from __future__ import annotations

import html
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageColor

from gemma_demo.engine.base import Message, Stats, Update
from gemma_demo.errors import InvalidInputError
from gemma_demo.engine.reasoning import SplitText, split_reasoning
from gemma_demo.engine.registry import ModelCapabilities
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.tasks import caption as caption_task
from gemma_demo.tasks import detection, html_page, ocr
from gemma_demo.tasks.caption import CaptionPreset, caption
from gemma_demo.tasks.detection import GroundingMode, detect, write_coco
from gemma_demo.tasks.html_page import extract_html, image_to_html, sandboxed_preview
from gemma_demo.tasks.ocr import OcrMode, parse_tables, strip_outer_fence

WIDTH, HEIGHT = 640, 480
CHUNK_CHARS = 7
TINY_NEW_TOKENS = 12
TINY_PICTURE_SIZE = (96, 64)

TWO_BOXES = """```json
[
  {"box_2d": [250, 100, 750, 500], "label": "cat"},
  {"box_2d": [600, 550, 900, 700], "label": "remote control"}
]
```"""
# On 640×480: x scales by 0.64 and y by 0.48.
CAT_BOX = (64, 120, 320, 360)
REMOTE_BOX = (352, 288, 448, 432)

TWO_POINTS = """```json
[{"point_2d": [500, 250], "label": "cat"}, {"point_2d": [750, 625], "label": "remote control"}]
```"""
CAT_POINT = (160, 240)
REMOTE_POINT = (400, 360)

EMPTY_THOUGHT = "<|channel>thought\n<channel|>"
REFUSAL = "I'm sorry, but I can't make out any cats in this picture; it looks like a plain gradient."


@dataclass
class ScriptedBackend:
    """Streams a fixed raw answer in small chunks, like a model writing tokens.

    With `split` the answer is cleaned the way the local backend cleans it; without, the
    raw text (thought markers included) arrives as the answer, as from a bare remote server.
    """

    raw: str
    split: bool = True
    name: str = "scripted"
    capabilities: ModelCapabilities = ModelCapabilities(audio=False, context_tokens=131_072)
    requests: list[tuple[list[Message], GenerationSettings]] = field(default_factory=list)

    def stream(self, messages: list[Message], settings: GenerationSettings) -> Iterator[Update]:
        self.requests.append((messages, settings))
        chunks = [self.raw[i : i + CHUNK_CHARS] for i in range(0, len(self.raw), CHUNK_CHARS)]
        for count in range(1, len(chunks) + 1):
            yield self._update("".join(chunks[:count]), count, done=False)
        yield self._update(self.raw, len(chunks), done=True)

    def _update(self, text: str, tokens: int, done: bool) -> Update:
        parts = split_reasoning(text) if self.split else SplitText(reasoning="", answer=text)
        stats = Stats(prompt_tokens=300, new_tokens=tokens)
        return Update(answer=parts.answer, reasoning=parts.reasoning, stats=stats, done=done)


def gradient(size: tuple[int, int] = (WIDTH, HEIGHT)) -> Image.Image:
    """Colours unlike any drawing colour, so every drawn box or point changes pixels."""
    red = Image.linear_gradient("L").rotate(90).resize(size)
    return Image.merge("RGB", (red, Image.new("L", size, 90), Image.new("L", size, 160)))


def png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def last(results: Iterator):
    return list(results)[-1]


def sent_prompt(backend: ScriptedBackend) -> str:
    return backend.requests[0][0][0]["content"][1]["text"]


def same_pixels(first: Image.Image, second: Image.Image) -> bool:
    return first.size == second.size and first.convert("RGB").tobytes() == second.convert("RGB").tobytes()


# Detection with scripted answers


def test_two_labelled_boxes_become_pixel_boxes_drawing_and_coco():
    original = gradient()
    backend = ScriptedBackend(TWO_BOXES)
    results = list(detect(backend, png_bytes(original), "cat, remote control", image_name="living room.jpg"))
    final = results[-1]
    assert final.done and not any(result.done for result in results[:-1])
    expected = [("cat", CAT_BOX, None), ("remote control", REMOTE_BOX, None)]
    assert [(d.label, d.box, d.point) for d in final.detections] == expected
    assert final.image.size == original.size and not same_pixels(final.image, original)
    left_edge_middle = (CAT_BOX[0], (CAT_BOX[1] + CAT_BOX[3]) // 2)
    assert final.image.getpixel(left_edge_middle) == ImageColor.getrgb(final.legend["cat"])
    assert set(final.legend) == {"cat", "remote control"}
    assert len(final.coco["annotations"]) == 2
    assert final.coco["images"][0] == {"id": 1, "file_name": "living room.jpg", "width": WIDTH, "height": HEIGHT}
    assert final.coco["annotations"][0]["bbox"] == [64, 120, 256, 240]
    assert final.message == "Found 2 boxes and 0 points."
    data = json.loads(json.dumps(final.to_json()))
    assert set(data) == {"detections", "coco", "answer", "reasoning", "stats", "message", "done"}
    assert data["detections"][0] == {"label": "cat", "box": list(CAT_BOX)}
    assert (data["coco"], data["answer"]) == (final.coco, TWO_BOXES)
    assert data["stats"]["new_tokens"] == final.update.stats.new_tokens > 0


def test_every_named_class_goes_into_one_query_with_the_picture_first():
    backend = ScriptedBackend(TWO_BOXES)
    with pytest.raises(InvalidInputError):
        next(detect(backend, gradient(), " , "))
    assert backend.requests == []
    list(detect(backend, gradient(), "cat, remote control"))
    [([message], settings)] = backend.requests
    image_part, text_part = message["content"]
    assert image_part["type"] == "image" and image_part["image"].size == (WIDTH, HEIGHT)
    assert text_part["type"] == "text" and all(part in text_part["text"] for part in ('"cat"', '"remote control"', "box_2d"))
    assert settings == detection.DEFAULT_SETTINGS
    assert (settings.image_budget, settings.sampling) == (280, False)


def test_partial_results_carry_the_text_so_far_and_the_original_picture():
    original = gradient()
    results = list(detect(ScriptedBackend(TWO_BOXES), original, "cat, remote control"))
    partial = results[:-1]
    assert len(results) >= 2
    assert all(same_pixels(result.image, original) for result in partial)
    assert all(result.detections == () and result.coco is None for result in partial)
    final_answer = results[-1].update.answer
    assert all(final_answer.startswith(result.update.answer) for result in partial)
    assert len({result.update.answer for result in partial}) > 1


def test_pointing_answer_gives_pixel_points_and_nothing_for_coco(tmp_path: Path):
    original = gradient()
    path = tmp_path / "room.png"
    original.save(path)
    backend = ScriptedBackend(TWO_POINTS)
    final = last(detect(backend, path, "cat, remote control", mode=GroundingMode.POINTS))
    expected = [("cat", CAT_POINT, None), ("remote control", REMOTE_POINT, None)]
    assert [(d.label, d.point, d.box) for d in final.detections] == expected
    assert final.image.getpixel(CAT_POINT) == ImageColor.getrgb(final.legend["cat"])
    assert not same_pixels(final.image, original)
    assert final.coco is None and final.message == "Found 0 boxes and 2 points."
    with pytest.raises(InvalidInputError):
        write_coco(final, tmp_path / "exports")
    assert not (tmp_path / "exports").exists()
    assert final.to_json()["detections"][0] == {"label": "cat", "point": list(CAT_POINT)}
    prompt = sent_prompt(backend)
    assert "point_2d" in prompt and "box_2d" not in prompt


@pytest.mark.parametrize("split", [True, False], ids=["cleaned-by-backend", "raw-from-server"])
def test_the_large_models_empty_thought_before_the_json_is_ignored(split: bool):
    backend = ScriptedBackend(EMPTY_THOUGHT + TWO_BOXES + "<turn|>", split=split)
    final = last(detect(backend, gradient(), "cat, remote control"))
    assert [d.box for d in final.detections] == [CAT_BOX, REMOTE_BOX]


@pytest.mark.parametrize(("answer", "shown"), [(REFUSAL, REFUSAL), ("", "answer was empty")], ids=["prose", "empty"])
def test_unreadable_answer_keeps_the_picture_and_says_so_with_the_raw_text(answer: str, shown: str):
    original = gradient()
    final = last(detect(ScriptedBackend(answer), original, "cat"))
    assert final.done and same_pixels(final.image, original)
    assert final.detections == () and final.coco is None and final.legend == {}
    assert final.message.startswith("No detections could be read")
    assert shown in final.message


@pytest.mark.parametrize(
    ("image_name", "expected"),
    [
        ("../../etc/My Photo (1).jpg", "My_Photo_1.coco.json"),
        ("C:\\Users\\me\\cat.png", "cat.coco.json"),
        ("..", "image.coco.json"),
        ("ünïcode☃.webp", "n_code.coco.json"),
    ],
)
def test_write_coco_stays_in_the_folder_with_a_safe_name(tmp_path: Path, image_name: str, expected: str):
    final = last(detect(ScriptedBackend(TWO_BOXES), gradient(), "cat, remote control", image_name=image_name))
    path = write_coco(final, tmp_path / "exports")
    assert path.parent == tmp_path / "exports"
    assert path.name == expected
    assert json.loads(path.read_text(encoding="utf-8")) == final.coco


# Captions


def test_caption_presets_send_their_prompt_and_stream_the_answer():
    answer = "A tabby cat naps on a sunlit sofa next to a TV remote."
    backend = ScriptedBackend(answer)
    results = list(caption(backend, gradient(), CaptionPreset.SHORT))
    assert len(results) >= 2 and results[-1].done
    assert results[-1].text == answer
    assert sent_prompt(backend) == caption_task.PRESET_PROMPTS[CaptionPreset.SHORT]
    assert json.loads(json.dumps(results[-1].to_json()))["caption"] == answer


def test_custom_caption_prompt_is_sent_and_an_empty_one_refused():
    backend = ScriptedBackend("Three.")
    list(caption(backend, gradient(), CaptionPreset.CUSTOM, custom_prompt="  How many cats?  "))
    assert sent_prompt(backend) == "How many cats?"
    with pytest.raises(InvalidInputError):
        next(caption(backend, gradient(), CaptionPreset.CUSTOM, custom_prompt="   "))
    assert len(backend.requests) == 1


# OCR

RECEIPT_MARKDOWN = """```markdown
# Quarterly report

Sales grew in every region; see the table | below.

| Region | Q1 | Q2 |
|:-------|---:|:--:|
| North | 1,200 | 1,350 |
| South \\| East | 980 | 1,010 |
| West | 700 |

Notes: figures in EUR.

Staff | Role
--- | ---
Ana | Lead | since 2019
```"""

EXPECTED_TABLES = (
    [["Region", "Q1", "Q2"], ["North", "1,200", "1,350"], ["South | East", "980", "1,010"], ["West", "700", ""]],
    [["Staff", "Role", ""], ["Ana", "Lead", "since 2019"]],
)


def test_ocr_markdown_answer_gives_text_without_the_fence_and_its_tables():
    backend = ScriptedBackend(RECEIPT_MARKDOWN)
    results = list(ocr.ocr(backend, gradient(), OcrMode.MARKDOWN))
    final = results[-1]
    assert final.text.startswith("# Quarterly report") and final.text.endswith("Ana | Lead | since 2019")
    assert "```" not in final.text
    assert final.markdown == final.text
    assert final.tables == EXPECTED_TABLES == parse_tables(RECEIPT_MARKDOWN)
    assert parse_tables("| only | header |\n|---|---|") == ([["only", "header"]],)
    assert all(result.tables == () for result in results[:-1])
    assert backend.requests[0][1].image_budget == 1120
    assert json.loads(json.dumps(final.to_json()))["tables"] == [list(table) for table in EXPECTED_TABLES]


def test_plain_text_renders_verbatim_in_a_fence_longer_than_any_inside():
    text = "*Not emphasis*\n# not a heading\nuse ``` for code"
    final = last(ocr.ocr(ScriptedBackend(text), gradient(), OcrMode.TEXT))
    assert final.text == text
    assert final.markdown == f"````text\n{text}\n````"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("```\nHello\nworld\n```", "Hello\nworld"),
        ("```text\nHello", "Hello"),
        ("```python\na = 1\n```\nand\n```python\nb = 2\n```", "```python\na = 1\n```\nand\n```python\nb = 2\n```"),
        ("Hello `x`", "Hello `x`"),
    ],
    ids=["whole", "still-streaming", "several-blocks", "no-fence"],
)
def test_only_a_fence_around_the_whole_answer_is_removed(answer: str, expected: str):
    assert strip_outer_fence(answer) == expected


# HTML

PAGE = """<!DOCTYPE html>
<html lang="en">
<head><style>body { font-family: sans-serif; }</style></head>
<body><h1>Sign in</h1><button onclick="alert('hi')">Go</button></body>
</html>"""

HTML_ANSWER = f"Here is a page that matches your sketch:\n\n```html\n{PAGE}\n```\n\nIt uses a single centred column."


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (HTML_ANSWER, PAGE),
        (f"The button:\n```html\n<button>Go</button>\n```\n{HTML_ANSWER}", PAGE),
        (f"Sure! {PAGE} Hope this helps.", PAGE),
        ("Just prose.", "Just prose."),
    ],
    ids=["fenced-with-prose", "snippet-then-page", "unfenced", "no-html"],
)
def test_html_is_extracted_from_the_answer(answer: str, expected: str):
    assert extract_html(answer) == expected


def test_html_streams_and_the_final_page_is_whole():
    backend = ScriptedBackend(EMPTY_THOUGHT + HTML_ANSWER)
    results = list(image_to_html(backend, gradient(), instruction="Make the button blue"))
    final = results[-1]
    assert len(results) >= 2 and final.done
    assert final.html == PAGE
    assert final.preview == sandboxed_preview(PAGE)
    inside_fence = [r.html for r in results if "```html\n<!DOCTYPE" in r.update.answer and not r.done]
    assert inside_fence and all(PAGE.startswith(page) for page in inside_fence)
    prompt = sent_prompt(backend)
    assert "self-contained HTML" in prompt and prompt.endswith("Make the button blue")
    assert json.loads(json.dumps(final.to_json()))["html"] == PAGE
    assert backend.requests[0][1] == html_page.DEFAULT_SETTINGS
    assert (html_page.DEFAULT_SETTINGS.thinking, html_page.DEFAULT_SETTINGS.max_new_tokens) == (True, 4000)


def parsed_preview(page: str) -> tuple[list[tuple[str, dict]], list[str]]:
    """What a browser-like parser sees: the tags and the decoded attributes."""
    tags: list[tuple[str, dict]] = []
    end_tags: list[str] = []
    parser = HTMLParser()
    parser.handle_starttag = lambda tag, attrs: tags.append((tag, dict(attrs)))
    parser.handle_endtag = end_tags.append
    parser.feed(sandboxed_preview(page))
    parser.close()
    return tags, end_tags


HOSTILE = '" onload="parent.alert(1)" x="</iframe><script>fetch("/api")</script><iframe sandbox="allow-same-origin'


@pytest.mark.parametrize("page", [PAGE, HOSTILE], ids=["page", "attribute-breakout"])
def test_preview_sandboxes_scripts_away_from_the_app_and_keeps_the_page_inside(page: str):
    [(tag, attrs)], end_tags = parsed_preview(page)
    assert tag == "iframe" and end_tags == ["iframe"]
    assert attrs["sandbox"] == "allow-scripts" and "onload" not in attrs
    assert attrs["referrerpolicy"] == "no-referrer"
    assert re.search(r"height:\s*\d+px", attrs["style"]) and re.search(r"width:", attrs["style"])
    assert attrs["srcdoc"] == page
    markup = sandboxed_preview(page).replace(html.escape(page, quote=True), "")
    assert "allow-same-origin" not in markup and markup.count("</iframe>") == 1


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x00")))
def test_any_page_round_trips_through_the_preview_attribute(page: str):
    [(tag, attrs)], end_tags = parsed_preview(page)
    assert (tag, end_tags, attrs["sandbox"], attrs["srcdoc"]) == ("iframe", ["iframe"], "allow-scripts", page)


# The tiny model (conftest's `tiny_backend`): the real processor, chat template and streaming path


def short(settings: GenerationSettings) -> GenerationSettings:
    return settings.with_changes(max_new_tokens=TINY_NEW_TOKENS)


TINY_RUNS: dict[str, Callable] = {
    "detect": lambda b, p: detect(b, p, "cat, remote control", short(detection.DEFAULT_SETTINGS)),
    "point": lambda b, p: detect(b, p, "cat", short(detection.DEFAULT_SETTINGS), GroundingMode.POINTS),
    "caption": lambda b, p: caption(b, p, CaptionPreset.DETAILED, settings=short(caption_task.DEFAULT_SETTINGS)),
    "ocr": lambda b, p: ocr.ocr(b, p, OcrMode.TABLE, short(ocr.DEFAULT_SETTINGS)),
    "html": lambda b, p: image_to_html(b, p, "dark theme", short(html_page.DEFAULT_SETTINGS)),
}


@pytest.mark.parametrize("task", sorted(TINY_RUNS))
def test_every_task_runs_on_the_tiny_model(tiny_backend, task: str):
    results = list(TINY_RUNS[task](tiny_backend, gradient(TINY_PICTURE_SIZE)))
    assert len(results) >= 2
    assert results[-1].done and not any(result.done for result in results[:-1])
    assert results[-1].update.stats.new_tokens > 0
    json.dumps(results[-1].to_json())


def test_tiny_models_gibberish_leaves_the_picture_and_explains(tiny_backend):
    original = gradient(TINY_PICTURE_SIZE)
    final = last(detect(tiny_backend, original, "cat", short(detection.DEFAULT_SETTINGS)))
    assert final.done and same_pixels(final.image, original) and final.detections == ()
    assert final.message.startswith("No detections could be read")
    assert final.update.answer.strip() and final.update.answer.strip() in final.message
