"""Screenshot or sketch to a working web page, with a preview that cannot harm the app.

The page is model output, so its scripts are untrusted. The preview runs them in an
iframe whose sandbox grants scripts but not `allow-same-origin`: the page gets an opaque
origin and cannot read the app's DOM, cookies or storage, nor call its API as the user.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass

from gemma_demo.engine.base import Backend
from gemma_demo.media.images import ImageSource, load_image
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.tasks.result import StreamedResult
from gemma_demo.tasks.messages import image_messages

# Google's own image-to-HTML example thinks first and leaves room for a whole page; it samples,
# as 4000 tokens of greedy decoding tend to loop.
DEFAULT_SETTINGS = GenerationSettings(thinking=True, sampling=True, max_new_tokens=4000)
PREVIEW_STYLE = "width: 100%; height: 600px; border: 1px solid #d0d0d0; background: #ffffff;"
PREVIEW_TITLE = "Preview of the generated page"

PROMPT = (
    "Write a single, self-contained HTML page that reproduces this screenshot or sketch as "
    "closely as possible: the same layout, text, colours and controls. Put all CSS in one "
    "<style> element and any JavaScript in one <script> element; do not load external files, "
    "fonts or images. Answer with the complete page in one ```html code block."
)

_HTML_FENCE = re.compile(r"```html[ \t]*\n(.*?)(?:\n```|\Z)", re.DOTALL | re.IGNORECASE)
_PAGE_START = re.compile(r"<!doctype|<html", re.IGNORECASE)
_PAGE_END = "</html>"


@dataclass(frozen=True)
class HtmlResult(StreamedResult):
    html: str
    preview: str

    def to_json(self) -> dict:
        return {
            "html": self.html,
            "answer": self.update.answer,
            "reasoning": self.update.reasoning,
            "stats": self.update.stats.to_json(),
            "done": self.done,
        }


def html_prompt(instruction: str = "") -> str:
    extra = instruction.strip()
    return f"{PROMPT}\n\nAlso follow this instruction: {extra}" if extra else PROMPT


def image_to_html(
    backend: Backend,
    image: ImageSource,
    instruction: str = "",
    settings: GenerationSettings = DEFAULT_SETTINGS,
) -> Iterator[HtmlResult]:
    """Stream the page; every result has the HTML so far and a preview of it."""
    picture = load_image(image)
    for update in backend.stream(image_messages(picture, html_prompt(instruction)), settings):
        page = extract_html(update.answer)
        yield HtmlResult(update=update, html=page, preview=sandboxed_preview(page))


def extract_html(text: str) -> str:
    """The page inside the answer, also from a half-streamed one.

    Prefers the longest ```html block (a model may show a snippet before the page), then
    the span from `<!DOCTYPE` or `<html` to the last `</html>`, then the whole answer.
    """
    blocks = _HTML_FENCE.findall(text)
    if blocks:
        return max(blocks, key=len).strip()
    start = _PAGE_START.search(text)
    if start is None:
        return text.strip()
    end = text.lower().rfind(_PAGE_END, start.start())
    stop = len(text) if end < 0 else end + len(_PAGE_END)
    return text[start.start() : stop].strip()


def sandboxed_preview(page: str) -> str:
    """An iframe for the page; `quote=True` keeps `"` and `</iframe>` inside the attribute."""
    return (
        f'<iframe sandbox="allow-scripts" referrerpolicy="no-referrer" title="{PREVIEW_TITLE}" '
        f'style="{PREVIEW_STYLE}" srcdoc="{html.escape(page, quote=True)}"></iframe>'
    )
