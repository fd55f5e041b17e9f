"""Built-in tools: safe arithmetic, time zones, the app's tasks over a conversation's uploads."""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_helpers import QueuedBackend
from scripted_backend import SHAPES_ANSWER

from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.engine.tool_syntax import write_call
from gemma_demo.tasks.agent import StepKind, run_agent
from gemma_demo.tasks.tools.base import ToolContext, ToolError
from gemma_demo.tasks.tools.catalog import toolbox
from gemma_demo.tasks.tools.utilities import calculate, current_time

SHAPES = Path(__file__).resolve().parent.parent / "input" / "shapes.jpg"


@pytest.mark.parametrize("expression, result", [("(17 + 5) * 3 / 2", 33.0), ("2 ** 10", 1024), ("-7 // 2", -4), ("10 % 4", 2)])
def test_calculate_does_arithmetic(expression, result):
    assert calculate(expression)["result"] == result


@pytest.mark.parametrize("expression, refusal", [
    ("__import__('os').system('id')", "Call"),
    ("(1).real", "Attribute"),
    ("x + 1", "Name"),
    ("10 ** 10 ** 9", "too large"),
    ("9 ** 999", "too large"),
    ("1e308 * 10", "too large"),
    ("1 / 0", "Division by zero"),
    ("[1, 2]", "List"),
])
def test_calculate_refuses_anything_but_arithmetic(expression, refusal):
    with pytest.raises(ToolError, match=refusal):
        calculate(expression)


def test_current_time_reads_an_iana_zone_and_rejects_unknown_ones():
    assert current_time("Asia/Tokyo")["time"].endswith("+09:00")
    for zone in ("Mars/Olympus", "../../etc/passwd"):
        with pytest.raises(ToolError, match="Unknown time zone"):
            current_time(zone)


def test_detect_objects_runs_the_detection_task_on_an_upload_by_name():
    model = QueuedBackend().enqueue(
        write_call("detect_objects", {"attachment": "shapes.jpg", "objects": "red circle, star"}),
        SHAPES_ANSWER,  # the detection task's own model call, inside the tool
        "There is a red circle and a star.",
    )
    context = ToolContext(backend=model, attachments=(SHAPES,))
    steps = list(run_agent(model, [{"role": "user", "content": "Find shapes"}], toolbox(["detect_objects"]),
                           GenerationSettings(), context))
    (step,) = [s for s in steps if s.kind is StepKind.TOOL]
    labels = [d["label"] for d in step.result.response["detections"]]
    assert "red circle" in labels and "star" in labels
    (picture,) = step.result.images
    assert picture.size == (640, 480) and picture.tobytes() != __import__("PIL.Image").Image.open(SHAPES).convert(picture.mode).tobytes()
    # The inner task call declares no tools.
    assert model.requests[1][1].tools == ()


def test_attachments_are_only_the_conversations_uploads():
    model = QueuedBackend().enqueue(write_call("read_text", {"attachment": "/etc/passwd"}), "No.")
    context = ToolContext(backend=model, attachments=(SHAPES,))
    steps = list(run_agent(model, [{"role": "user", "content": "read"}], toolbox(["read_text"]), GenerationSettings(), context))
    (step,) = [s for s in steps if s.kind is StepKind.TOOL]
    assert "No attachment '/etc/passwd'" in step.result.response["error"] and "0: shapes.jpg" in step.result.response["error"]
