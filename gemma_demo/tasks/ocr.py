"""Reading text, documents and tables off a picture.

Models like to wrap a whole transcription in a code fence, which would show as one grey
block; the fence is dropped so the text renders as the document it is. Tables are also
read back out of the Markdown, so the UI can offer them as data rather than as prose.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass

from gemma_demo.engine.base import Backend, Update
from gemma_demo.media.images import ImageSource, load_image
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.tasks.messages import image_messages

# Small print is unreadable at the default 280 soft tokens; documents also run long.
DEFAULT_SETTINGS = GenerationSettings(image_budget=1120, sampling=False, max_new_tokens=4096)
MIN_FENCE_TICKS = 3

Table = list[list[str]]

_OPENING_FENCE = re.compile(r"\A```[\w+-]*[ \t]*\n")
_CLOSING_FENCE = re.compile(r"\n?```[ \t]*\Z")
_BACKTICK_RUN = re.compile(r"`+")
_DELIMITER_ROW = re.compile(r"\A\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\Z")
_CELL_SEPARATOR = re.compile(r"(?<!\\)\|")
# What a Markdown renderer would take for raw HTML: a tag, a closing tag, a comment, a
# declaration or a processing instruction all start with `<` and one of these.
_RAW_HTML_START = re.compile(r"<(?=[A-Za-z/!?])")
_FENCE_OPENING = re.compile(r"(`{3,})[^`]*|(~{3,}).*")


class OcrMode(enum.Enum):
    TEXT = "text"
    MARKDOWN = "markdown"
    TABLE = "table"


MODE_PROMPTS = {
    OcrMode.TEXT: (
        "Transcribe all the text in this image exactly as written, in reading order. Keep the "
        "original spelling, punctuation, capitalisation and line breaks. Do not translate, "
        "correct, summarise or describe anything. Answer with the text only."
    ),
    OcrMode.MARKDOWN: (
        "Convert this document to Markdown, transcribing every word exactly as written. Keep "
        "the structure: headings as # headings, lists as Markdown lists, tables as Markdown "
        "tables with | pipes, emphasis as ** or *. Do not translate, correct or summarise. "
        "Answer with the Markdown only."
    ),
    OcrMode.TABLE: (
        "Transcribe every table in this image as a GitHub Markdown table with | pipes and a "
        "header row followed by a | --- | separator row. Copy every cell exactly as written, "
        "leave empty cells empty and write a literal | inside a cell as \\|. Separate tables "
        "with a blank line. Answer with the tables only."
    ),
}


@dataclass(frozen=True)
class OcrResult:
    update: Update
    mode: OcrMode
    text: str
    markdown: str
    tables: tuple[Table, ...] = ()

    @property
    def done(self) -> bool:
        return self.update.done

    def to_json(self) -> dict:
        return {
            "mode": self.mode.value,
            "text": self.text,
            "tables": list(self.tables),
            "reasoning": self.update.reasoning,
            "stats": self.update.stats.to_json(),
            "done": self.done,
        }


def ocr(
    backend: Backend,
    image: ImageSource,
    mode: OcrMode = OcrMode.TEXT,
    settings: GenerationSettings = DEFAULT_SETTINGS,
) -> Iterator[OcrResult]:
    """Stream a transcription; tables are parsed once, from the finished answer."""
    picture = load_image(image)
    for update in backend.stream(image_messages(picture, MODE_PROMPTS[mode]), settings):
        text = strip_outer_fence(update.answer)
        yield OcrResult(
            update=update,
            mode=mode,
            text=text,
            markdown=as_markdown(text, mode),
            tables=parse_tables(text) if update.done else (),
        )


def strip_outer_fence(answer: str) -> str:
    """Unwrap an answer that is one fenced block, also while its closing fence is still missing."""
    text = answer.strip()
    opening = _OPENING_FENCE.match(text)
    if opening is None:
        return text
    body = text[opening.end() :]
    closing = _CLOSING_FENCE.search(body)
    inner = body if closing is None else body[: closing.start()]
    return text if "```" in inner else inner.strip("\n")


def as_markdown(text: str, mode: OcrMode) -> str:
    """Markdown to render. Plain text goes in a fence: Markdown would join its lines and eat `*` and `#`."""
    if mode is not OcrMode.TEXT or not text:
        return without_raw_html(text)
    longest = max((len(run) for run in _BACKTICK_RUN.findall(text)), default=0)
    fence = "`" * max(MIN_FENCE_TICKS, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def without_raw_html(markdown: str) -> str:
    """The model's Markdown with any HTML it wrote shown as text, not rendered.

    A document can carry instructions the model follows, so its answer is untrusted: a
    `<` that could open a tag, comment or declaration becomes `&lt;` (which renders as
    `<`). Fenced code blocks are kept, as they render verbatim, but only fences at the
    start of a line, where every renderer sees one begin; once renderers could disagree
    on where a block ends, no later fence is kept. Inline code spans are escaped too (they
    then show `&lt;`): where a span ends depends on the paragraph around it.
    """
    lines: list[str] = []
    fence, fences_kept = None, True
    for line in re.split(r"\r\n|\r|\n", markdown):
        if fence is None:
            opening = _FENCE_OPENING.fullmatch(line) if fences_kept else None
            fence = opening and (opening.group(1) or opening.group(2))
            lines.append(_RAW_HTML_START.sub("&lt;", line))
            continue
        lines.append(line)
        closing = _closes_fence(line, fence)
        if any(closing):
            fence, fences_kept = None, all(closing)
    return "\n".join(lines)


def _closes_fence(line: str, fence: str) -> tuple[bool, bool]:
    """Whether `line` ends the block opened by `fence`, by CommonMark's rule and by marked's (Gradio's)."""
    commonmark = re.fullmatch(rf" {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*", line)
    marked = re.fullmatch(rf" {{0,3}}{re.escape(fence)}[`~]* *", line)
    return commonmark is not None, marked is not None


def parse_tables(markdown: str) -> tuple[Table, ...]:
    """Every pipe table as rows of cells, header first, padded to the widest row.

    Rows longer than the header are kept whole (GitHub would drop the extra cells), since
    in a transcription those cells are data the model read, not noise.
    """
    lines = [line.strip() for line in markdown.splitlines()]
    tables: list[Table] = []
    index = 0
    while index + 1 < len(lines):
        if not (_is_row(lines[index]) and _DELIMITER_ROW.match(lines[index + 1]) and "|" in lines[index + 1]):
            index += 1
            continue
        rows = [_cells(lines[index])]
        index += 2
        while index < len(lines) and _is_row(lines[index]):
            rows.append(_cells(lines[index]))
            index += 1
        tables.append(_padded(rows))
    return tuple(tables)


def _is_row(line: str) -> bool:
    return _CELL_SEPARATOR.search(line) is not None


def _cells(line: str) -> list[str]:
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [cell.strip().replace("\\|", "|") for cell in _CELL_SEPARATOR.split(line)]


def _padded(rows: Table) -> Table:
    width = max(len(row) for row in rows)
    return [row + [""] * (width - len(row)) for row in rows]
