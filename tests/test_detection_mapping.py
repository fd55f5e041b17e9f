"""Grid boxes land on the right pixels of the picture the person uploaded."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from gemma_demo.tasks.grounding import Box, Point, grid_to_pixels, parse_grounding, point_to_pixels
from gemma_demo.media.images import load_image

SIZES = [(1000, 1000), (640, 480), (480, 640), (1920, 1080), (37, 911), (1, 1)]
GRID_BOXES = [
    Box("whole", 0.0, 0.0, 1000.0, 1000.0),
    Box("middle", 250.0, 100.0, 750.0, 900.0),
    Box("corner", 0.0, 800.0, 333.0, 1000.0),
    Box("odd", 123.4, 56.7, 890.1, 432.1),
]
RED = (255, 0, 0)
BLUE = (0, 0, 255)
ORIENTATION_TAG = 0x0112
JPEG_TOLERANCE = 60


def _painted_extent(box: Box, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Paint the pixels whose centres fall in the box's share of the picture, and measure them."""
    centres_x = (np.arange(width) + 0.5) / width * 1000
    centres_y = (np.arange(height) + 0.5) / height * 1000
    inside_x = (centres_x >= box.x0) & (centres_x <= box.x1)
    inside_y = (centres_y >= box.y0) & (centres_y <= box.y1)
    mask = np.outer(inside_y, inside_x).astype(np.uint8) * 255
    return Image.fromarray(mask).getbbox()


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
@pytest.mark.parametrize("box", GRID_BOXES, ids=lambda box: box.label)
def test_grid_box_lands_on_the_right_pixels(size: tuple[int, int], box: Box) -> None:
    width, height = size
    x0, y0, x1, y1 = grid_to_pixels(box, width, height)
    assert 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height
    assert x0 == pytest.approx(box.x0 / 1000 * width, abs=1)
    assert x1 == pytest.approx(box.x1 / 1000 * width, abs=1)
    assert y0 == pytest.approx(box.y0 / 1000 * height, abs=1)
    assert y1 == pytest.approx(box.y1 / 1000 * height, abs=1)
    painted = _painted_extent(box, width, height)
    if painted is not None:
        assert all(abs(got - want) <= 1 for got, want in zip((x0, y0, x1, y1), painted))


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_whole_grid_is_the_whole_picture(size: tuple[int, int]) -> None:
    assert grid_to_pixels(GRID_BOXES[0], *size) == (0, 0, *size)


def test_point_maps_x_then_y() -> None:
    assert point_to_pixels(Point("dot", 250.0, 500.0), 640, 480) == (320, 120)
    assert point_to_pixels(Point("edge", 1000.0, 0.0), 37, 911) == (0, 911)


def test_boxes_outside_the_grid_are_clamped_to_the_picture() -> None:
    assert grid_to_pixels(Box("wild", -50.0, -10.0, 1200.0, 2000.0), 640, 480) == (0, 0, 640, 480)


def test_empty_picture_size_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        grid_to_pixels(GRID_BOXES[0], 0, 10)


def _rotated_jpeg(path: Path, orientation: int) -> Path:
    """A 300×200 photo stored sideways: left half red, right half blue, EXIF says turn it."""
    stored = Image.new("RGB", (300, 200), BLUE)
    ImageDraw.Draw(stored).rectangle((0, 0, 149, 199), fill=RED)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    stored.save(path, "JPEG", quality=95, exif=exif)
    return path


def _close(pixel: tuple[int, int, int], colour: tuple[int, int, int]) -> bool:
    return all(abs(got - want) <= JPEG_TOLERANCE for got, want in zip(pixel, colour))


@pytest.mark.parametrize(
    ("orientation", "red_box", "blue_box"),
    [
        (6, "[0, 0, 500, 1000]", "[500, 0, 1000, 1000]"),
        (8, "[500, 0, 1000, 1000]", "[0, 0, 500, 1000]"),
    ],
    ids=["orientation-6", "orientation-8"],
)
def test_boxes_on_an_exif_rotated_photo(
    tmp_path: Path, orientation: int, red_box: str, blue_box: str
) -> None:
    picture = load_image(_rotated_jpeg(tmp_path / "sideways.jpg", orientation))
    assert picture.size == (200, 300)
    answer = f'[{{"box_2d": {red_box}, "label": "red"}}, {{"box_2d": {blue_box}, "label": "blue"}}]'
    colours = {"red": RED, "blue": BLUE}
    for box in parse_grounding(answer).boxes:
        x0, y0, x1, y1 = grid_to_pixels(box, *picture.size)
        assert (x1 - x0, y1 - y0) == (200, 150)
        inside = [(x, y) for x in range(x0 + 2, x1 - 2, 7) for y in range(y0 + 2, y1 - 2, 7)]
        assert all(_close(picture.getpixel(xy), colours[box.label]) for xy in inside)
