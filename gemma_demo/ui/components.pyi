"""Gradio components the app needs that Gradio does not ship.

Gradio writes a type stub (`ui_components.pyi`) beside any module that subclasses a
component, as it does for its own components; the stub is kept in the repository so
importing this module leaves the source tree as it is.
"""

from __future__ import annotations

import gradio as gr
from gradio.data_classes import FileData

from gradio.events import Dependency

class ImageUpload(gr.Image):
    """An image input that hands the handler the uploaded file untouched.

    `gr.Image` opens every upload with Pillow before the handler runs, so a damaged or
    mislabelled file fails with Gradio's bare "Error". Passing the path on lets the
    task's loader say what is wrong and what to upload instead. Gradio has already
    checked that the path is a file uploaded to this app.
    """

    is_template = True  # drawn by the frontend's own image component

    def preprocess(self, payload: FileData | None) -> str | None:
        if payload is None or payload.path is None or (payload.url or "").startswith("data:"):
            return super().preprocess(payload)
        return payload.path
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component