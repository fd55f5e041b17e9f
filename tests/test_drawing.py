"""Boxes and points drawn where they belong, on a copy, in one colour per label."""

import json
import re

import numpy as np
import pytest
from PIL import Image, ImageColor

from gemma_demo.media.drawing import annotate, detections_json, legend, to_coco

GREY = (128, 128, 128)
WHITE = (255, 255, 255)
LIGHT = 180
HEX_COLOUR = re.compile(r"#[0-9a-f]{6}")


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return ImageColor.getrgb(hex_colour)


def test_annotate_draws_on_a_copy_of_the_same_size() -> None:
    original = Image.new("RGB", (400, 300), GREY)
    before = original.tobytes()
    drawn = annotate(original, [("cat", (50, 80, 200, 250))], [("dot", (300, 100))])
    assert drawn is not original
    assert original.tobytes() == before
    assert drawn.size == original.size and drawn.mode == "RGB"
    assert drawn.tobytes() != before


def test_transparent_input_gives_an_rgb_copy() -> None:
    original = Image.new("RGBA", (120, 90), (10, 20, 30, 0))
    drawn = annotate(original, [("cat", (10, 10, 60, 60))], [])
    assert drawn.mode == "RGB" and drawn.size == (120, 90)
    assert original.getpixel((100, 80)) == (10, 20, 30, 0)


def test_legend_gives_distinct_colours_in_first_seen_order() -> None:
    colours = legend(["cat", "dog", "cat", "remote control"])
    assert list(colours) == ["cat", "dog", "remote control"]
    assert len(set(colours.values())) == 3
    assert all(HEX_COLOUR.fullmatch(colour) for colour in colours.values())
    assert legend(["cat", "dog"]) == {"cat": colours["cat"], "dog": colours["dog"]}


def test_long_label_lists_still_get_distinct_colours() -> None:
    colours = legend(f"label {index}" for index in range(60))
    assert len(set(colours.values())) == 60


def test_box_edges_have_the_label_colour() -> None:
    boxes = [("cat", (50, 80, 200, 250)), ("dog", (380, 200, 250, 40))]
    drawn = annotate(Image.new("RGB", (400, 300), GREY), boxes, [])
    colours = legend(["cat", "dog"])
    assert colours["cat"] != colours["dog"]
    assert drawn.getpixel((50, 165)) == _rgb(colours["cat"])
    assert drawn.getpixel((125, 250)) == _rgb(colours["cat"])
    assert drawn.getpixel((200, 165)) == _rgb(colours["cat"])
    assert drawn.getpixel((380, 120)) == _rgb(colours["dog"])
    assert drawn.getpixel((315, 200)) == _rgb(colours["dog"])
    assert drawn.getpixel((125, 165)) == GREY


def test_lines_get_thicker_on_large_pictures() -> None:
    small = annotate(Image.new("RGB", (300, 300), GREY), [("cat", (50, 50, 250, 250))], [])
    large = annotate(Image.new("RGB", (3000, 3000), GREY), [("cat", (500, 500, 2500, 2500))], [])
    colour = _rgb(legend(["cat"])["cat"])
    assert small.getpixel((53, 150)) == GREY
    assert large.getpixel((505, 1500)) == colour


def test_box_reaching_the_border_is_drawn_on_the_last_pixels() -> None:
    drawn = annotate(Image.new("RGB", (200, 100), GREY), [("cat", (0, 0, 200, 100))], [])
    colour = _rgb(legend(["cat"])["cat"])
    assert drawn.getpixel((199, 50)) == colour
    assert drawn.getpixel((100, 99)) == colour


def _text_pixels(picture: Image.Image) -> int:
    """Count the light pixels of the tag's white text; the grey picture and red tag have none."""
    return int((np.asarray(picture).min(axis=2) > LIGHT).sum())


@pytest.mark.parametrize(
    "box",
    [(0, 0, 300, 200), (250, 0, 300, 60), (0, 150, 40, 200), (260, 170, 300, 200), (120, 0, 180, 40)],
    ids=["whole", "top-right", "bottom-left", "bottom-right", "top"],
)
def test_label_tag_stays_whole_inside_the_picture(box: tuple[int, int, int, int]) -> None:
    """The tag's white text has as many pixels at the border as in open space: nothing was cut off."""
    label = "remote control"
    at_border = annotate(Image.new("RGB", (300, 200), GREY), [(label, box)], [])
    in_open_space = annotate(Image.new("RGB", (900, 200), GREY), [(label, (400, 100, 500, 180))], [])
    assert _text_pixels(in_open_space) > 0
    assert _text_pixels(at_border) == _text_pixels(in_open_space)


def test_points_are_filled_circles_with_an_outline() -> None:
    drawn = annotate(Image.new("RGB", (500, 500), GREY), [], [("dot", (250, 300)), ("other", (100, 100))])
    colours = legend(["dot", "other"])
    assert drawn.getpixel((250, 300)) == _rgb(colours["dot"])
    assert drawn.getpixel((100, 100)) == _rgb(colours["other"])
    outline_row = [drawn.getpixel((x, 300)) for x in range(250, 270)]
    assert WHITE in outline_row
    assert drawn.getpixel((269, 300)) == GREY


def test_coco_export_is_valid() -> None:
    boxes = [("cat", (10, 20, 110, 70)), ("dog", (200, 5, 150, 45)), ("cat", (0, 0, 640, 480))]
    coco = json.loads(json.dumps(to_coco("kitchen.jpg", 640, 480, boxes)))
    assert coco["images"] == [{"id": 1, "file_name": "kitchen.jpg", "width": 640, "height": 480}]
    assert coco["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    annotations = coco["annotations"]
    assert [annotation["id"] for annotation in annotations] == [1, 2, 3]
    assert [annotation["category_id"] for annotation in annotations] == [1, 2, 1]
    bboxes = [annotation["bbox"] for annotation in annotations]
    assert bboxes == [[10, 20, 100, 50], [150, 5, 50, 40], [0, 0, 640, 480]]
    assert [annotation["area"] for annotation in annotations] == [5000, 2000, 307200]
    assert all(annotation["image_id"] == 1 and annotation["iscrowd"] == 0 for annotation in annotations)


def test_detections_json_lists_boxes_then_points_in_pixels() -> None:
    assert detections_json([("cat", (30, 40, 10, 20))], [("dot", (5, 6))]) == [
        {"label": "cat", "box": [10, 20, 30, 40]},
        {"label": "dot", "point": [5, 6]},
    ]
