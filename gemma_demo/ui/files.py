"""Files a request writes for its downloads and pictures, each request in its own folder."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

APP_TEMP_DIR = Path(tempfile.gettempdir()) / "gemma_demo"


@contextmanager
def request_folder() -> Iterator[Path]:
    """A folder of this request's downloads; Gradio copies what is returned, so it can go after."""
    APP_TEMP_DIR.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="request-", dir=APP_TEMP_DIR))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def picture_file(picture: Image.Image | np.ndarray, path: Path) -> str:
    """A result picture saved as a file of the request.

    Gradio copies a file into its cache atomically, but writes a picture it encodes itself
    in place: when two requests show the same picture, one could be served the file while
    the other rewrites it, and the download breaks off.
    """
    image = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    image.save(path)
    return str(path)
