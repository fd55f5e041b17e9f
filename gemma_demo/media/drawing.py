"""Drawing detections on the picture, and exporting them for other tools.

Boxes arrive in pixels of the original (upright) picture, so what is drawn lines up
with what the person uploaded. Sizes scale with the picture so labels stay legible
on a phone photo and on a thumbnail alike.
"""

import colorsys
from collections.abc import Iterable, Sequence

from PIL import Image, ImageDraw, ImageFont

PixelBox = tuple[int, int, int, int]
PixelPoint = tuple[int, int]
LabelledBox = tuple[str, PixelBox]
LabelledPoint = tuple[str, PixelPoint]

PALETTE = (
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4",
    "#f032e6", "#bfef45", "#ffe119", "#469990", "#9a6324", "#800000",
)
GOLDEN_RATIO_CONJUGATE = 0.618033988749895
EXTRA_SATURATION = 0.75
EXTRA_VALUE = 0.9
LINE_FRACTION = 0.004
FONT_FRACTION = 0.025
POINT_FRACTION = 0.012
MIN_LINE_WIDTH = 1
MIN_FONT_SIZE = 10
MIN_POINT_RADIUS = 3
TAG_PADDING_FRACTION = 0.25
DARK_TEXT = "#000000"
LIGHT_TEXT = "#ffffff"
POINT_OUTLINE = "#ffffff"
LUMINANCE_THRESHOLD = 150
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
COCO_IMAGE_ID = 1
MIN_TAG_PADDING = 1
CHANNEL_MAX = 255


def legend(labels: Iterable[str]) -> dict[str, str]:
    """Give each label a colour in first-seen order, so a label keeps its colour across runs."""
    colours: dict[str, str] = {}
    for label in labels:
        if label not in colours:
            colours[label] = _colour(len(colours))
    return colours


def _colour(index: int) -> str:
    """Fixed high-contrast colours first, then evenly spread hues for long label lists."""
    if index < len(PALETTE):
        return PALETTE[index]
    hue = (index - len(PALETTE)) * GOLDEN_RATIO_CONJUGATE % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, EXTRA_SATURATION, EXTRA_VALUE)
    return "#" + "".join(f"{round(channel * CHANNEL_MAX):02x}" for channel in (red, green, blue))


def annotate(
    image: Image.Image,
    boxes_px: Sequence[LabelledBox],
    points_px: Sequence[LabelledPoint] = (),
) -> Image.Image:
    """Return an RGB copy of `image` with boxes, points and their label tags drawn on it."""
    canvas = image.convert("RGB")
    colours = legend([label for label, _ in boxes_px] + [label for label, _ in points_px])
    shortest_side = min(canvas.size)
    line_width = max(MIN_LINE_WIDTH, round(shortest_side * LINE_FRACTION))
    font = ImageFont.load_default(size=max(MIN_FONT_SIZE, round(shortest_side * FONT_FRACTION)))
    radius = max(MIN_POINT_RADIUS, round(shortest_side * POINT_FRACTION))
    draw = ImageDraw.Draw(canvas)
    for label, box in boxes_px:
        draw.rectangle(_drawable(box, canvas.size), outline=colours[label], width=line_width)
    for label, (x, y) in points_px:
        draw.ellipse(
            (x - radius, y - radius, x + radius, y + radius),
            fill=colours[label],
            outline=POINT_OUTLINE,
            width=max(MIN_LINE_WIDTH, line_width // 2),
        )
    for label, box in boxes_px:
        x0, y0, _, _ = _drawable(box, canvas.size)
        _draw_tag(draw, canvas.size, label, (x0, y0), colours[label], font)
    for label, (x, y) in points_px:
        _draw_tag(draw, canvas.size, label, (x + radius, y - radius), colours[label], font)
    return canvas


def _ordered(box: PixelBox) -> PixelBox:
    x0, y0, x1, y1 = box
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _drawable(box: PixelBox, canvas_size: tuple[int, int]) -> PixelBox:
    """Pull edges at `width`/`height` (a box reaching the border) onto the last pixel row."""
    last_x, last_y = canvas_size[0] - 1, canvas_size[1] - 1
    x0, y0, x1, y1 = _ordered(box)
    return (
        min(max(x0, 0), last_x),
        min(max(y0, 0), last_y),
        min(max(x1, 0), last_x),
        min(max(y1, 0), last_y),
    )


def _draw_tag(
    draw: ImageDraw.ImageDraw,
    canvas_size: tuple[int, int],
    label: str,
    anchor: PixelPoint,
    colour: str,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> None:
    """Put the tag just above `anchor`, or below it at the top edge, always inside the picture."""
    left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
    padding = max(MIN_TAG_PADDING, round((bottom - top) * TAG_PADDING_FRACTION))
    tag_width = right - left + 2 * padding
    tag_height = bottom - top + 2 * padding
    width, height = canvas_size
    x = min(max(anchor[0], 0), max(width - tag_width, 0))
    y = anchor[1] - tag_height if anchor[1] - tag_height >= 0 else anchor[1]
    y = min(max(y, 0), max(height - tag_height, 0))
    draw.rectangle((x, y, x + tag_width - 1, y + tag_height - 1), fill=colour)
    draw.text((x + padding - left, y + padding - top), label, font=font, fill=_text_colour(colour))


def _text_colour(background: str) -> str:
    red, green, blue = (int(background[index : index + 2], 16) for index in (1, 3, 5))
    luma = sum(weight * channel for weight, channel in zip(LUMA_WEIGHTS, (red, green, blue)))
    return DARK_TEXT if luma > LUMINANCE_THRESHOLD else LIGHT_TEXT


def detections_json(
    boxes_px: Sequence[LabelledBox],
    points_px: Sequence[LabelledPoint] = (),
) -> list[dict]:
    """Plain pixel coordinates, for people who want the numbers rather than the picture."""
    boxes = [{"label": label, "box": list(_ordered(box))} for label, box in boxes_px]
    points = [{"label": label, "point": list(point)} for label, point in points_px]
    return boxes + points


def to_coco(image_name: str, width: int, height: int, boxes_px: Sequence[LabelledBox]) -> dict:
    """A COCO detection file, so results open in labelling and evaluation tools."""
    labels = dict.fromkeys(label for label, _ in boxes_px)
    category_ids = {label: index for index, label in enumerate(labels, start=1)}
    annotations = []
    for index, (label, box) in enumerate(boxes_px, start=1):
        x0, y0, x1, y1 = _ordered(box)
        annotations.append(
            {
                "id": index,
                "image_id": COCO_IMAGE_ID,
                "category_id": category_ids[label],
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": (x1 - x0) * (y1 - y0),
                "iscrowd": 0,
            }
        )
    return {
        "images": [{"id": COCO_IMAGE_ID, "file_name": image_name, "width": width, "height": height}],
        "annotations": annotations,
        "categories": [{"id": number, "name": label} for label, number in category_ids.items()],
    }
