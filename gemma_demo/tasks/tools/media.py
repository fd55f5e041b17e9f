"""The app's own tasks as tools, over the conversation's uploads (by number or file name).

Each runs the same task function as its tab, on the conversation's model and settings, and
gives the model a short JSON result and the chat its picture (boxes drawn, sampled frames).
Only files the visitor uploaded to this conversation can be named: never a path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from gemma_demo.media.video import FrameSampling
from gemma_demo.tasks.tools.base import ToolError, ToolOutput, current_context

T = TypeVar("T")
VIDEO_TOOL_FRAMES = 16


def attachment_path(attachment: str | int) -> Path:
    """The upload called `attachment`: its number (0 is the first) or its file name."""
    uploads = current_context().attachments
    if not uploads:
        raise ToolError("No files are attached to this conversation.")
    key = str(attachment).strip()
    if key.isdigit() and int(key) < len(uploads):
        return uploads[int(key)]
    for path in uploads:
        if path.name == key:
            return path
    names = ", ".join(f"{i}: {p.name}" for i, p in enumerate(uploads))
    raise ToolError(f"No attachment {key!r}; the conversation has {names}.")


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


def _settings():
    context = current_context()
    if context.backend is None:
        raise ToolError("No model is available to this tool.")
    return context.backend, context.settings


def _grounding(attachment: str, objects: str, points: bool) -> ToolOutput:
    from gemma_demo.tasks.detection import GroundingMode, detect

    backend, settings = _settings()
    path = attachment_path(attachment)
    mode = GroundingMode.POINTS if points else GroundingMode.BOXES
    result = _finished(detect(backend, path, objects, settings, mode, image_name=path.name))
    data = result.to_json()
    return ToolOutput({"detections": data["detections"], "message": data["message"]}, (result.image,))


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


def read_text(attachment: str) -> dict:
    """Read the text of an attached picture (a document, a sign, a screenshot) as Markdown.

    Args:
        attachment: The picture: its number (0 is the first upload) or its file name.
    """
    from gemma_demo.tasks.ocr import OcrMode, ocr

    backend, settings = _settings()
    result = _finished(ocr(backend, attachment_path(attachment), OcrMode.MARKDOWN, settings))
    return {"markdown": result.text}


def transcribe(attachment: str, language: str = "English") -> dict:
    """Write down what is said in an attached audio or video file.

    Args:
        attachment: The recording: its number (0 is the first upload) or its file name.
        language: The language spoken in it.
    """
    from gemma_demo.tasks.transcription import transcribe as transcribe_audio

    backend, settings = _settings()
    result = _finished(transcribe_audio(backend, attachment_path(attachment), language, settings))
    return {"transcript": result.text, "cues": result.to_json()["cues"]}


def describe_video(attachment: str, question: str = "Describe what happens in this video.") -> ToolOutput:
    """Answer a question about an attached video from frames sampled across it.

    Args:
        attachment: The video: its number (0 is the first upload) or its file name.
        question: What to ask about the video.
    """
    from gemma_demo.tasks.video_question import describe_video as ask_video

    backend, settings = _settings()
    sampling = FrameSampling(num_frames=VIDEO_TOOL_FRAMES)
    result = _finished(ask_video(backend, attachment_path(attachment), question, sampling, False, settings))
    return ToolOutput({"answer": result.text, "frames": [label for _, label in result.gallery]},
                      tuple(frame for frame, _ in result.gallery))
