"""Uploads of every kind become upright RGB pictures, or a clear error."""

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFile

from gemma_demo.errors import InvalidInputError
from gemma_demo.media.images import load_image

RED = (255, 0, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)
ORIENTATION_TAG = 0x0112
JPEG_TOLERANCE = 40


def _near(pixel: tuple[int, ...], colour: tuple[int, ...], tolerance: int = JPEG_TOLERANCE) -> bool:
    return all(abs(got - want) <= tolerance for got, want in zip(pixel, colour, strict=True))


def _noise_bytes(image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((256, 256), 64).convert("RGB").save(buffer, image_format)
    return buffer.getvalue()


def _png_claiming(width: int, height: int, rows: int = 4) -> bytes:
    """A valid PNG header for a huge RGB picture, followed by only a few compressed rows."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress((b"\x00" + bytes(width * 3)) * rows)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_zero_byte_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        load_image(_write(tmp_path / "empty.jpg", b""))
    with pytest.raises(InvalidInputError, match="empty"):
        load_image(b"")


def test_missing_file_and_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not found"):
        load_image(tmp_path / "nowhere.png")
    with pytest.raises(InvalidInputError, match="not found"):
        load_image(str(tmp_path))


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_truncated_files_are_refused(tmp_path: Path, image_format: str) -> None:
    data = _noise_bytes(image_format)
    with pytest.raises(InvalidInputError, match="damaged or incomplete"):
        load_image(_write(tmp_path / "cut.img", data[: len(data) // 2]))
    with pytest.raises(InvalidInputError):
        load_image(data[:40])


def test_text_renamed_to_jpg_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "notes.jpg", b"Shopping list:\n- milk\n- eggs\n")
    with pytest.raises(InvalidInputError, match="“notes.jpg” is not a picture"):
        load_image(path)


def test_zip_renamed_to_jpg_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "holiday.jpg"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("photo.txt", "not really a photo")
    with pytest.raises(InvalidInputError, match="not a picture"):
        load_image(path)


@pytest.mark.parametrize(("width", "height"), [(30000, 30000), (8000, 8000)])
def test_decompression_bombs_are_refused_before_decoding(tmp_path: Path, monkeypatch, width: int, height: int) -> None:
    path = _write(tmp_path / "bomb.png", _png_claiming(width, height))
    assert path.stat().st_size < 1_000_000
    decoded = []
    load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or load(self))
    with pytest.raises(InvalidInputError, match="megapixel limit"):
        load_image(path)
    assert decoded == [], "the pixels were decoded before the size was checked"


def test_pillow_bomb_warning_is_refused_too(tmp_path: Path) -> None:
    """Above Pillow's own warning size, even a generous limit must not decode the picture."""
    limit = Image.MAX_IMAGE_PIXELS
    assert limit is not None
    side = int((limit * 1.2) ** 0.5)
    with pytest.raises(InvalidInputError, match="megapixel limit"):
        load_image(_png_claiming(side, side), max_pixels=limit * 2)


def test_max_pixels_is_the_limit() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (100, 100), RED).save(buffer, "PNG")
    assert load_image(buffer.getvalue(), max_pixels=10_000).size == (100, 100)
    with pytest.raises(InvalidInputError, match="100×100 pixels"):
        load_image(buffer.getvalue(), max_pixels=9_999)


def test_one_pixel_picture_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), BLUE).save(path)
    picture = load_image(path)
    assert picture.size == (1, 1) and picture.getpixel((0, 0)) == BLUE


def test_content_decides_not_extension(tmp_path: Path) -> None:
    path = tmp_path / "really_a_png.jpg"
    Image.new("RGB", (4, 3), BLUE).save(path, "PNG")
    assert load_image(str(path)).getpixel((3, 2)) == BLUE


def test_sixteen_bit_grey_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "depth.png"
    values = np.array([[0, 257 * 64, 257 * 128, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    picture = load_image(path)
    assert picture.mode == "RGB"
    assert [picture.getpixel((x, 0)) for x in range(4)] == [(0, 0, 0), (64,) * 3, (128,) * 3, WHITE]


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        ("I", [0, 1000, 65535], [0, 4, 255]),
        ("F", [0.0, 0.5, 1.0], [0, 128, 255]),
        ("F", [0.0, 128.0, 255.0], [0, 128, 255]),
    ],
)
def test_wide_modes_become_grey(mode: str, values: list[float], expected: list[int]) -> None:
    dtype = np.int32 if mode == "I" else np.float32
    picture = load_image(Image.fromarray(np.array([values], dtype=dtype)))
    assert [picture.getpixel((x, 0)) for x in range(len(values))] == [(level,) * 3 for level in expected]


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, "JPEG", quality=95)
    assert Image.open(path).mode == "CMYK"
    picture = load_image(path)
    assert picture.mode == "RGB" and _near(picture.getpixel((8, 8)), RED)


def test_palette_png_transparency_becomes_white(tmp_path: Path) -> None:
    path = tmp_path / "sticker.png"
    sticker = Image.new("P", (10, 10), 0)
    sticker.putpalette([0, 0, 0, 0, 0, 255])
    ImageDraw.Draw(sticker).rectangle((5, 0, 9, 9), fill=1)
    sticker.save(path, transparency=0)
    picture = load_image(path)
    assert picture.getpixel((0, 0)) == WHITE
    assert picture.getpixel((9, 9)) == BLUE


def test_rgba_png_is_composited_on_white(tmp_path: Path) -> None:
    path = tmp_path / "logo.png"
    logo = Image.new("RGBA", (3, 1))
    logo.putdata([(0, 0, 0, 0), (0, 0, 0, 128), (0, 0, 255, 255)])
    logo.save(path)
    picture = load_image(path)
    assert picture.getpixel((0, 0)) == WHITE
    assert _near(picture.getpixel((1, 0)), (127, 127, 127), tolerance=1)
    assert picture.getpixel((2, 0)) == BLUE


@pytest.mark.parametrize(
    ("mode", "colour", "expected"),
    [("LA", (0, 0), WHITE), ("1", 1, WHITE), ("L", 77, (77,) * 3)],
)
def test_other_modes_become_rgb(mode: str, colour: object, expected: tuple[int, int, int]) -> None:
    picture = load_image(Image.new(mode, (2, 2), colour))
    assert picture.mode == "RGB" and picture.getpixel((1, 1)) == expected


def test_animated_gif_gives_its_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "blink.gif"
    frames = [Image.new("RGB", (20, 20), colour) for colour in (RED, BLUE, (0, 255, 0))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(path).n_frames == 3
    picture = load_image(path)
    assert picture.mode == "RGB" and picture.getpixel((10, 10)) == RED


def test_exif_rotated_jpeg_is_turned_upright(tmp_path: Path) -> None:
    path = tmp_path / "phone.jpg"
    stored = Image.new("RGB", (300, 200), BLUE)
    ImageDraw.Draw(stored).rectangle((0, 0, 149, 199), fill=RED)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    stored.save(path, "JPEG", quality=95, exif=exif)
    picture = load_image(path.read_bytes())
    assert picture.size == (200, 300)
    assert _near(picture.getpixel((100, 20)), RED)
    assert _near(picture.getpixel((100, 280)), BLUE)


def test_result_is_a_loaded_copy(tmp_path: Path) -> None:
    original = Image.new("RGB", (5, 5), RED)
    copy = load_image(original)
    assert copy is not original
    copy.putpixel((0, 0), BLUE)
    assert original.getpixel((0, 0)) == RED
    path = tmp_path / "gone.png"
    original.save(path)
    loaded = load_image(path)
    path.unlink()
    assert loaded.getpixel((4, 4)) == RED and getattr(loaded, "fp", None) is None
