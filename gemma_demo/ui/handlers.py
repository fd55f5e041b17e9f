"""Event functions of the web app: each calls one task and maps its results to outputs.

A handler here takes `(backend, settings, *inputs)` and yields one tuple per streamed
result, ending with the reasoning and the status line. `endpoints.Endpoints.wrap` turns
it into what Gradio calls.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr

from gemma_demo.engine.base import Backend, Stats, Update
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.errors import InvalidInputError
from gemma_demo.media.filenames import safe_stem
from gemma_demo.media.video_sampling import FrameSampling
from gemma_demo.tasks.audio_question import ask_audio
from gemma_demo.tasks.caption import CaptionPreset, caption
from gemma_demo.tasks.detection import GroundingMode, detect, write_coco
from gemma_demo.tasks.html_page import image_to_html
from gemma_demo.tasks.ocr import OcrMode, Table, ocr
from gemma_demo.tasks.transcription import TranscriptResult, transcribe, translate, write_subtitles
from gemma_demo.tasks.video_question import describe_video
from gemma_demo.ui.files import picture_file, request_folder

E = TypeVar("E", bound=enum.Enum)


def require(value: Any, message: str) -> None:
    """Refuse a missing upload before any work, with what to do instead."""
    if value is None or value == "":
        raise InvalidInputError(message)


def member(kind: type[E], value: str) -> E:
    """The enum member named by a radio button's value; API clients may send anything."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(repr(item.value) for item in kind)
        raise InvalidInputError(f"{value!r} is not one of {allowed}.") from None


def progress(update: Update, note: str = "", stats: Stats | None = None) -> tuple[str, str]:
    """The last two outputs of every endpoint: the reasoning and the status line.

    The line starts with what the task is doing (`update.status`, e.g. "Chunk 2 of 3" of a
    long recording) and its note, then the figures.
    """
    parts = (update.status, note, (stats or update.stats).summary())
    status = " · ".join(part for part in parts if part)
    return update.reasoning, status


def detect_objects(backend: Backend, settings: GenerationSettings, image: str, objects: str) -> Iterator[tuple]:
    """Find the named objects in a picture and draw a box around each one.

    Streams the model's answer. The last result holds the annotated picture, its legend,
    the boxes as JSON ([{"label": "circle", "box": [x0, y0, x1, y1]}] in pixels of the
    picture as uploaded) and a COCO file of the boxes.

    Args:
        image: The picture to search (JPEG, PNG, WebP, GIF or BMP).
        objects: What to find, separated by commas, e.g. "red circle, blue square".
    """
    yield from _grounding(backend, settings, image, objects, GroundingMode.BOXES)


def point_at_objects(backend: Backend, settings: GenerationSettings, image: str, objects: str) -> Iterator[tuple]:
    """Point at each of the named objects in a picture.

    Streams the model's answer. The last result holds the picture with a dot on each
    object, its legend and the points as JSON ([{"label": "star", "point": [x, y]}] in
    pixels of the picture as uploaded).

    Args:
        image: The picture to search (JPEG, PNG, WebP, GIF or BMP).
        objects: What to point at, separated by commas, e.g. "star, triangle".
    """
    yield from _grounding(backend, settings, image, objects, GroundingMode.POINTS)


def _grounding(
    backend: Backend, settings: GenerationSettings, image: str, objects: str, mode: GroundingMode
) -> Iterator[tuple]:
    require(image, "Upload a picture first, or pick an example below it.")
    with request_folder() as folder:
        for result in detect(backend, image, objects, settings, mode, image_name=Path(image).name):
            if not result.done:
                yield None, None, None, result.update.answer, None, *progress(result.update)
                continue
            coco = str(write_coco(result, folder)) if result.coco else None
            # With nothing found, the message explains why and quotes the answer.
            answer = result.update.answer if result.detections else result.message
            legend = [(label, colour) for label, colour in result.legend.items()]
            detections = result.to_json()["detections"]
            found = picture_file(result.image, folder / f"{safe_stem(Path(image).name, 'picture')}-found.png")
            yield found, legend, detections, answer, coco, *progress(result.update)


def caption_image(
    backend: Backend, settings: GenerationSettings, image: str, style: str, question: str | None = None
) -> Iterator[tuple]:
    """Describe a picture in one sentence or in detail, or answer a question about it.

    Streams the caption as it is written.

    Args:
        image: The picture to describe (JPEG, PNG, WebP, GIF or BMP).
        style: "short" (one sentence), "detailed", or "custom" to use `question`.
        question: Your own question or instruction about the picture; used when style is "custom".
    """
    require(image, "Upload a picture first, or pick an example below it.")
    for result in caption(backend, image, member(CaptionPreset, style), question or "", settings):
        yield result.text, *progress(result.update)


def read_document(backend: Backend, settings: GenerationSettings, image: str, mode: str) -> Iterator[tuple]:
    """Read the text of a photo, scan or screenshot (OCR).

    Streams the text as Markdown and as plain text; the last result also holds the
    first table found, as rows of cells.

    Args:
        image: The document picture (JPEG, PNG, WebP, GIF or BMP).
        mode: "text" (exact text and line breaks), "markdown" (structure kept) or "table" (tables only).
    """
    require(image, "Upload a picture of a document first, or pick an example below it.")
    for result in ocr(backend, image, member(OcrMode, mode), settings):
        yield result.markdown, result.text, first_table(result.tables), *progress(result.update)


def first_table(tables: tuple[Table, ...]) -> gr.Dataframe | None:
    """The first table as data, labelled with how many there are (all of them are in the Markdown)."""
    if not tables:
        return None
    header, *rows = tables[0]
    label = "Table" if len(tables) == 1 else f"Table 1 of {len(tables)} (all are in the Markdown)"
    return gr.Dataframe({"headers": header, "data": rows}, label=label)


def sketch_to_page(
    backend: Backend, settings: GenerationSettings, image: str, instruction: str | None = None
) -> Iterator[tuple]:
    """Turn a screenshot or a sketch of a web page into one self-contained HTML file.

    Streams the code; the last result also holds a preview (an iframe sandboxed from
    this app) and the page as a file.

    Args:
        image: The screenshot or sketch (JPEG, PNG, WebP, GIF or BMP).
        instruction: Optional extra wishes, e.g. "use a dark theme".
    """
    require(image, "Upload a screenshot or a sketch first, or pick an example below it.")
    with request_folder() as folder:
        for result in image_to_html(backend, image, instruction or "", settings):
            if not result.done:
                yield result.html, None, None, *progress(result.update)
                continue
            page = folder / f"{safe_stem(Path(image).name, 'page')}.html"
            page.write_text(result.html, encoding="utf-8")
            yield result.html, result.preview, str(page), *progress(result.update)


def transcribe_speech(backend: Backend, settings: GenerationSettings, audio: str, language: str) -> Iterator[tuple]:
    """Write down what is said in a recording of any length, with subtitles.

    Streams the transcript chunk by chunk (the model hears 30 s at a time). The last
    result holds the SRT subtitles and SRT, VTT and TXT files.

    Args:
        audio: The recording (WAV, MP3, FLAC, OGG, M4A, or a video's sound track).
        language: The language spoken, e.g. "English".
    """
    require(audio, "Record or upload some speech first, or pick an example below it.")
    yield from _subtitled(transcribe(backend, audio, language or "", settings), audio)


def translate_speech(
    backend: Backend, settings: GenerationSettings, audio: str, language: str, target_language: str
) -> Iterator[tuple]:
    """Translate what is said in a recording of any length, with translated subtitles.

    Streams the translation chunk by chunk; the last result holds the SRT subtitles
    and SRT, VTT and TXT files in the target language.

    Args:
        audio: The recording (WAV, MP3, FLAC, OGG, M4A, or a video's sound track).
        language: The language spoken, e.g. "English".
        target_language: The language to translate into, e.g. "French".
    """
    require(audio, "Record or upload some speech first, or pick an example below it.")
    results = translate(backend, audio, language or "", target_language or "", settings)
    yield from _subtitled(results, audio)


def _subtitled(results: Iterator[TranscriptResult], audio: str) -> Iterator[tuple]:
    with request_folder() as folder:
        for result in results:
            srt = result.srt()
            files = None
            if result.done and srt:
                files = [str(path) for path in write_subtitles(result, folder, Path(audio).stem).values()]
            yield result.text, srt, files, *progress(result.update, stats=result.stats)


def ask_about_audio(backend: Backend, settings: GenerationSettings, audio: str, question: str) -> Iterator[tuple]:
    """Answer a question about a sound clip: speech, music, noises, the speaker's mood.

    Streams the answer; the model hears the first 30 s of the clip.

    Args:
        audio: The sound clip (WAV, MP3, FLAC, OGG, M4A).
        question: What to ask, e.g. "What is the speaker asking for?".
    """
    require(audio, "Record or upload a sound clip first, or pick an example below it.")
    for result in ask_audio(backend, audio, question or "", settings):
        yield result.text, None, None, *progress(result.update, result.note)


def ask_about_video(
    backend: Backend,
    settings: GenerationSettings,
    video: str,
    question: str,
    num_frames: int,
    fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
    include_audio: bool = False,
) -> Iterator[tuple]:
    """Answer a question about a video from frames sampled across it, and optionally its sound.

    The first result holds the sampled frames, each captioned with the "mm:ss" time the
    model read beside it; then the answer streams.

    Args:
        video: The video file (MP4, WebM, MOV, MKV).
        question: What to ask, e.g. "What happens in this clip?".
        num_frames: How many frames to sample (the most when fps is set).
        fps: Frames per second to sample instead of a fixed count; empty or 0 for a fixed count.
        start: Start of the range to look at, in seconds; empty or 0 for the beginning.
        end: End of the range, in seconds; empty or 0 for the end of the video.
        include_audio: Also let the model hear the first 30 s of sound (E2B, E4B and 12B only).
    """
    require(video, "Upload a video first, or pick an example below it.")
    # A cleared number field arrives as 0 from the browser: 0 means "not set" for all three.
    sampling = FrameSampling(num_frames=int(num_frames), fps=fps or None, start=start or None, end=end or None)
    results = describe_video(backend, video, question or "", sampling, bool(include_audio), settings)
    with request_folder() as folder:
        frames: list[tuple[str, str]] = []
        for index, result in enumerate(results):
            if index == 0:
                frames = [(picture_file(frame, folder / f"frame-{number:02d}.webp"), label)
                          for number, (frame, label) in enumerate(result.gallery)]
            gallery = frames if index == 0 or result.done else gr.skip()
            yield gallery, result.text, *progress(result.update, result.note)
