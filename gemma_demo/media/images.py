"""Turning whatever a person uploads into a plain RGB picture the model can take.

Uploads arrive as paths, raw bytes or pictures already opened by Gradio, in any
mode Pillow knows and with any file name. The model only sees RGB, and boxes are
drawn on what the person saw, so the EXIF orientation is applied here, once.
Every failure becomes an `InvalidInputError` that says what to upload instead.
"""

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gemma_demo.errors import InvalidInputError

DEFAULT_MAX_PIXELS = 50_000_000
MEGAPIXEL = 1_000_000
WHITE = (255, 255, 255, 255)
EIGHT_BIT_PEAK = 255.0
SIXTEEN_BIT_PEAK = 65535.0
UNIT_PEAK = 1.0
HIGH_DEPTH_MODES = frozenset({"I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)

ImageSource = str | Path | bytes | Image.Image


def load_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Return a fully loaded RGB copy of `source`, upright and detached from any file.

    The size is checked from the header before any pixel is decoded, so a tiny
    file that claims billions of pixels is refused without allocating them.
    """
    name = _display_name(source)
    with _read_errors(name, max_pixels):
        if isinstance(source, Image.Image):
            return _plain_rgb(source, name, max_pixels)
        with Image.open(_readable(source, name)) as image:
            return _plain_rgb(image, name, max_pixels)


def image_size(source: str | Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Width and height from the header alone (Pillow opens lazily), refused like `load_image` would.

    What a request may decode is judged from this before any picture of it is decoded.
    """
    name = _display_name(source)
    with _read_errors(name, max_pixels), Image.open(_readable(source, name)) as image:
        _check_size(image, name, max_pixels)
        return image.size


@contextmanager
def _read_errors(name: str, max_pixels: int) -> Iterator[None]:
    """Pillow's errors as `InvalidInputError`s that say what to upload instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise _too_large(name, max_pixels) from error
        except UnidentifiedImageError as error:
            raise InvalidInputError(
                f"{name} is not a picture that can be read. "
                "Upload a JPEG, PNG, GIF, WebP or BMP image."
            ) from error
        except DECODE_ERRORS as error:
            raise InvalidInputError(
                f"{name} is damaged or incomplete ({error}). "
                "Save or export the picture again, then upload the new file."
            ) from error


def _display_name(source: ImageSource) -> str:
    if isinstance(source, (str, Path)):
        return f"The file “{Path(source).name}”"
    if isinstance(source, bytes):
        return "The uploaded file"
    return "The picture"


def _readable(source: str | Path | bytes, name: str) -> Path | io.BytesIO:
    """Refuse missing and empty files up front: Pillow's own errors for them are cryptic."""
    if isinstance(source, bytes):
        if not source:
            raise _empty(name)
        return io.BytesIO(source)
    path = Path(source)
    if not path.is_file():
        raise InvalidInputError(f"{name} was not found. Check the path or upload the picture again.")
    if path.stat().st_size == 0:
        raise _empty(name)
    return path


def _empty(name: str) -> InvalidInputError:
    return InvalidInputError(f"{name} is empty (0 bytes). Upload the picture again.")


def _too_large(name: str, max_pixels: int, size: tuple[int, int] | None = None) -> InvalidInputError:
    claimed = f" is {size[0]}×{size[1]} pixels, which" if size else ""
    return InvalidInputError(
        f"{name}{claimed} is larger than the {max_pixels / MEGAPIXEL:g} megapixel limit. "
        "Scale it down and upload it again."
    )


def _check_size(image: Image.Image, name: str, max_pixels: int) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidInputError(f"{name} has no pixels ({width}×{height}). Upload another picture.")
    if width * height > max_pixels:
        raise _too_large(name, max_pixels, image.size)


def _plain_rgb(image: Image.Image, name: str, max_pixels: int) -> Image.Image:
    _check_size(image, name, max_pixels)
    image.load()
    upright = ImageOps.exif_transpose(image)
    return _as_rgb(upright, name)


def _as_rgb(image: Image.Image, name: str) -> Image.Image:
    """Put transparency on white: the model reads black under clear pixels as content."""
    if image.mode in HIGH_DEPTH_MODES:
        return _high_depth_to_rgb(image)
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as error:
        raise InvalidInputError(
            f"{name} uses the {image.mode} colour mode, which cannot be shown. "
            "Convert it to RGB in an image editor and upload it again."
        ) from error


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Scale 16-bit and float pixels down; Pillow's own conversion clips them to white."""
    values = np.asarray(image, dtype=np.float64)
    values = np.where(np.isfinite(values), values, 0.0)
    scaled = values / _full_scale(image.mode, values) * EIGHT_BIT_PEAK
    grey = np.clip(np.round(scaled), 0, EIGHT_BIT_PEAK).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def _full_scale(mode: str, values: np.ndarray) -> float:
    """Guess the value meaning "white": 16-bit files say so, 32-bit ones need a look."""
    if mode.startswith("I;16"):
        return SIXTEEN_BIT_PEAK
    peak = float(values.max(initial=0.0))
    candidates = (EIGHT_BIT_PEAK, SIXTEEN_BIT_PEAK)
    if mode == "F":
        candidates = (UNIT_PEAK, *candidates)
    return next((scale for scale in candidates if peak <= scale), peak)
