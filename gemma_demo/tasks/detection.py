"""Open-vocabulary detection and pointing: ask for boxes or points, draw them, export COCO.

While tokens stream, results carry the text so far and the untouched picture: half a
JSON list cannot be drawn reliably. The final result parses the whole answer once and
maps the model's 0–1000 grid onto the pixels of the picture as uploaded.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from gemma_demo.engine.base import Backend, Update
from gemma_demo.engine.reasoning import CONTROL_TOKEN
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.errors import InvalidInputError
from gemma_demo.media.drawing import PixelBox, PixelPoint, annotate, detections_json, legend, to_coco
from gemma_demo.media.filenames import safe_stem
from gemma_demo.media.images import ImageSource, load_image
from gemma_demo.tasks.grounding import ParsedGrounding, grid_to_pixels, parse_grounding, point_to_pixels
from gemma_demo.tasks.messages import image_messages
from gemma_demo.tasks.result import StreamedResult

DEFAULT_SETTINGS = GenerationSettings(image_budget=280, sampling=False, max_new_tokens=1024)
DEFAULT_IMAGE_NAME = "image"
COCO_SUFFIX = ".coco.json"
MAX_OBJECT_TEXT_CHARS = 200


class GroundingMode(enum.Enum):
    BOXES = "boxes"
    POINTS = "points"


@dataclass(frozen=True)
class Detection:
    """One found object in pixels of the original picture: a box or a point."""

    label: str
    box: PixelBox | None = None
    point: PixelPoint | None = None


@dataclass(frozen=True)
class DetectionResult(StreamedResult):
    image: Image.Image
    detections: tuple[Detection, ...] = ()
    legend: dict[str, str] = field(default_factory=dict)
    coco: dict | None = None
    message: str = ""

    def to_json(self) -> dict:
        boxes = [(d.label, d.box) for d in self.detections if d.box is not None]
        points = [(d.label, d.point) for d in self.detections if d.point is not None]
        return {
            "detections": detections_json(boxes, points),
            "coco": self.coco,
            "answer": self.update.answer,
            "reasoning": self.update.reasoning,
            "stats": self.update.stats.to_json(),
            "message": self.message,
            "done": self.done,
        }


def grounding_prompt(objects: str, mode: GroundingMode) -> str:
    return detection_prompt(objects) if mode is GroundingMode.BOXES else pointing_prompt(objects)


def detect(
    backend: Backend,
    image: ImageSource,
    objects: str,
    settings: GenerationSettings = DEFAULT_SETTINGS,
    mode: GroundingMode = GroundingMode.BOXES,
    image_name: str = DEFAULT_IMAGE_NAME,
) -> Iterator[DetectionResult]:
    """Stream a detection of every comma-separated object in `objects` ("cat, remote control")."""
    prompt = grounding_prompt(objects, mode)
    picture = load_image(image)
    for update in backend.stream(image_messages(picture, prompt), settings):
        if update.done:
            yield _final_result(update, picture, image_name)
        else:
            yield DetectionResult(update=update, image=picture)


def _final_result(update: Update, picture: Image.Image, image_name: str) -> DetectionResult:
    """Parse a finished answer; when nothing is readable the picture stays as it was."""
    parsed = parse_grounding(update.answer)
    if parsed.is_empty:
        return DetectionResult(update=update, image=picture, message=_nothing_found(parsed))
    width, height = picture.size
    boxes = [(box.label, grid_to_pixels(box, width, height)) for box in parsed.boxes]
    points = [(point.label, point_to_pixels(point, width, height)) for point in parsed.points]
    detections = tuple(
        [Detection(label, box=box) for label, box in boxes]
        + [Detection(label, point=point) for label, point in points]
    )
    return DetectionResult(
        update=update,
        image=annotate(picture, boxes, points),
        detections=detections,
        legend=legend(detection.label for detection in detections),
        coco=to_coco(image_name, width, height, boxes) if boxes else None,
        message=parsed.message,
    )


def _nothing_found(parsed: ParsedGrounding) -> str:
    """Show what the model said, so a person can tell a refusal from a format slip."""
    answer = parsed.raw_text.strip()
    said = f"The model answered:\n\n{answer}" if answer else "The model's answer was empty."
    return f"{parsed.message}\n\n{said}"


def write_coco(result: DetectionResult, directory: str | Path) -> Path:
    """Save the COCO file under a name derived from the picture's, safe on any file system."""
    if result.coco is None:
        raise InvalidInputError("There are no boxes to export: run a box detection that finds something first.")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{safe_stem(result.coco['images'][0]['file_name'], DEFAULT_IMAGE_NAME)}{COCO_SUFFIX}"
    path.write_text(json.dumps(result.coco, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def detection_prompt(objects: str) -> str:
    """Ask for boxes in the format Gemma 4 was trained on, so `parse_grounding` can read them."""
    names = _object_names(objects)
    return _grounding_prompt(f"What are the bounding boxes of {_phrase(names)} in the image?", "box_2d", "y0, x0, y1, x1", names)


def pointing_prompt(objects: str) -> str:
    """Ask for one point per object, in the same JSON shape as boxes."""
    names = _object_names(objects)
    return _grounding_prompt(f"Point to {_phrase(names)} in the image.", "point_2d", "y, x", names)


def _grounding_prompt(question: str, key: str, coordinates: str, names: list[str]) -> str:
    return (
        f"{question} "
        "Answer with JSON only: a list with one item per object found, like "
        f'[{{"{key}": [{coordinates}], "label": {_quoted(names[0])}}}], '
        "with coordinates normalised to 0-1000. "
        f"Use these labels: {', '.join(map(_quoted, names))}. Answer [] if none is visible."
    )


def _object_names(objects: str) -> list[str]:
    """Split "cat, remote control" into names, without chat tokens or repeated names."""
    cleaned = " ".join(CONTROL_TOKEN.sub(" ", objects).split())
    if len(cleaned) > MAX_OBJECT_TEXT_CHARS:
        raise InvalidInputError(
            f"The list of objects is {len(cleaned)} characters long; keep it under "
            f"{MAX_OBJECT_TEXT_CHARS}, for example “cat, remote control”."
        )
    names: dict[str, str] = {}
    for name in cleaned.split(","):
        if name.strip():
            names.setdefault(name.strip().casefold(), name.strip())
    if not names:
        raise InvalidInputError("Type what to look for, for example “cat” or “cat, remote control”.")
    return list(names.values())


def _phrase(names: list[str]) -> str:
    everies = [f"every {name}" for name in names]
    if len(everies) == 1:
        return everies[0]
    return f"{', '.join(everies[:-1])} and {everies[-1]}"


def _quoted(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)
