"""The app's own tasks as tools, over the conversation's uploads (by number or file name).

Each runs the same task function as its tab, on the conversation's model with the task's own
defaults (OCR reads at 1120 image tokens, extraction decodes greedily; the chat's system prompt
and thinking stay in the chat), under the visitor's token cap; an argument the model sets (the
image budget of `read_text`) wins. Each gives the model a short JSON result and the chat its
picture (boxes drawn, sampled frames). Only files the visitor uploaded to this conversation can
be named: never a path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from gemma_demo.engine.base import Backend
from gemma_demo.engine.settings import IMAGE_BUDGETS, GenerationSettings
from gemma_demo.media.video_sampling import FrameSampling
from gemma_demo.tasks.tools.base import ToolError, ToolOutput, current_context, find_upload, upload_listing

T = TypeVar("T")
VIDEO_TOOL_FRAMES = 16


def attachment_path(attachment: str | int) -> Path:
    """The upload called `attachment`: its number (0 is the first) or its file name."""
    uploads = current_context().attachments
    if not uploads:
        raise ToolError("No files are attached to this conversation.")
    path = find_upload(uploads, attachment)
    if path is None:
        raise ToolError(f"No attachment {str(attachment).strip()!r}; the conversation has {upload_listing(uploads)}.")
    return path


def _finished(results: Iterator[T]) -> T:
    """The task's last result; a Stop or a timeout (the context's cancel flag) closes it early."""
    cancel = current_context().cancel
    final = None
    try:
        for final in results:
            if cancel.is_set():
                raise ToolError("The call was cancelled.")
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()
    if final is None:
        raise ToolError("The task returned nothing.")
    return final


def _settings(defaults: GenerationSettings, **changes) -> tuple[Backend, GenerationSettings]:
    """The conversation's model, and the task's `defaults` with the call's `changes` under its token cap."""
    context = current_context()
    if context.backend is None:
        raise ToolError("No model is available to this tool.")
    return context.backend, context.task_settings(defaults, **changes)


def _image_budget(value: int | str) -> dict[str, int]:
    """The model's budget as a settings change; 0 keeps the task's own."""
    given = str(value).strip()  # the model may write 560 or "560"
    if given == "0":
        return {}
    budget = next((budget for budget in IMAGE_BUDGETS if str(budget) == given), None)
    if budget is None:
        raise ToolError(f"image_budget must be 0 (the task's own) or one of {', '.join(map(str, IMAGE_BUDGETS))}.")
    return {"image_budget": budget}


def _grounding(attachment: str, objects: str, points: bool) -> ToolOutput:
    from gemma_demo.tasks.detection import DEFAULT_SETTINGS, GroundingMode, detect

    backend, settings = _settings(DEFAULT_SETTINGS)
    path = attachment_path(attachment)
    mode = GroundingMode.POINTS if points else GroundingMode.BOXES
    result = _finished(detect(backend, path, objects, settings, mode, image_name=path.name))
    data = result.to_json()
    return ToolOutput({"detections": data["detections"], "message": data["message"]}, (result.image,), result.update.stats)


def detect_objects(attachment: str, objects: str) -> ToolOutput:
    """Find objects in an attached picture and draw boxes around them (pixel coordinates).

    Args:
        attachment: The picture: its number (0 is the first upload) or its file name.
        objects: What to find, comma-separated, e.g. "cat, remote control".
    """
    return _grounding(attachment, objects, points=False)


def point_at(attachment: str, objects: str) -> ToolOutput:
    """Point at objects in an attached picture (one pixel point per object found).

    Args:
        attachment: The picture: its number (0 is the first upload) or its file name.
        objects: What to point at, comma-separated, e.g. "left eye, door handle".
    """
    return _grounding(attachment, objects, points=True)


def read_text(attachment: str, image_budget: int = 0) -> ToolOutput:
    """Read the text of an attached picture (a document, a sign, a screenshot) as Markdown.

    Args:
        attachment: The picture: its number (0 is the first upload) or its file name.
        image_budget: Soft tokens for the picture, one of 70, 140, 280, 560, 1120: fewer is faster,
            more reads smaller print. 0 keeps the reading task's own (1120, the most detail).
    """
    from gemma_demo.tasks.ocr import DEFAULT_SETTINGS, OcrMode, ocr

    backend, settings = _settings(DEFAULT_SETTINGS, **_image_budget(image_budget))
    result = _finished(ocr(backend, attachment_path(attachment), OcrMode.MARKDOWN, settings))
    return ToolOutput({"markdown": result.text}, stats=result.update.stats)


def read_document(attachment: str, pages: str = "") -> ToolOutput:
    """Read an attached PDF page by page, as Markdown (each page read at 1120 image tokens).

    Args:
        attachment: The PDF: its number (0 is the first upload) or its file name.
        pages: Which pages, e.g. "1-3, 5" (counted from 1); empty reads every page.
    """
    from gemma_demo.tasks.ocr_document import DEFAULT_SETTINGS, DocumentRequest, is_pdf
    from gemma_demo.tasks.ocr_document import read_document as read_pages

    backend, settings = _settings(DEFAULT_SETTINGS)
    path = attachment_path(attachment)
    if not is_pdf(path):
        raise ToolError(f"{path.name} is not a PDF; read a picture with read_text.")
    final = _finished(read_pages(backend, DocumentRequest((path,), pages=pages or None, settings=settings)))
    stats = None
    for page in final.pages:
        stats = page.stats if stats is None else stats.followed_by(page.stats)
    return ToolOutput({"pages": [{"page": page.page, "markdown": page.text} for page in final.pages]}, stats=stats)


def transcribe(attachment: str, language: str = "English") -> ToolOutput:
    """Write down what is said in an attached audio or video file.

    Args:
        attachment: The recording: its number (0 is the first upload) or its file name.
        language: The language spoken in it.
    """
    from gemma_demo.tasks.transcription import DEFAULT_SETTINGS
    from gemma_demo.tasks.transcription import transcribe as transcribe_audio

    backend, settings = _settings(DEFAULT_SETTINGS)
    result = _finished(transcribe_audio(backend, attachment_path(attachment), language, settings))
    return ToolOutput({"transcript": result.text, "cues": result.to_json()["cues"]}, stats=result.stats)


def describe_video(attachment: str, question: str = "Describe what happens in this video.") -> ToolOutput:
    """Answer a question about an attached video from frames sampled across it.

    Args:
        attachment: The video: its number (0 is the first upload) or its file name.
        question: What to ask about the video.
    """
    from gemma_demo.tasks.video_question import DEFAULT_SETTINGS
    from gemma_demo.tasks.video_question import describe_video as ask_video

    backend, settings = _settings(DEFAULT_SETTINGS)
    sampling = FrameSampling(num_frames=VIDEO_TOOL_FRAMES)
    result = _finished(ask_video(backend, attachment_path(attachment), question, sampling, False, settings))
    return ToolOutput({"answer": result.text, "frames": [label for _, label in result.gallery]},
                      tuple(frame for frame, _ in result.gallery), result.update.stats)
