"""Agent tools run their task's own settings, not the chat's: the settings each tool's model call
got, recorded by the scripted backend, through the Chat tab's agent turn and the agent CLI.

The chat here asks for everything a tool must not inherit (a system prompt, thinking, sampling
hot, a small image budget); only its token cap may lower a task's own.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_helpers import QueuedBackend
from scripted_backend import POINTS_ANSWER, SHAPES_ANSWER, SPOKEN, TABLE_ANSWER

from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.engine.tool_syntax import write_call
from gemma_demo.tasks import chat, detection, ocr, transcription, video_question
from gemma_demo.tasks.agent import AgentOptions, StepKind, run_agent
from gemma_demo.tasks.conversation import ChatOptions, file_part, text_part
from gemma_demo.tasks.tools.base import ToolContext
from gemma_demo.tasks.tools.catalog import toolbox
from gemma_demo.ui.chat_agent import AgentChoice, agent_turn
from gemma_demo.ui.session_files import NO_FILES

INPUT = Path(__file__).resolve().parents[1] / "input"
CHAT = chat.DEFAULT_SETTINGS.with_changes(
    system_prompt="Answer like a pirate.", thinking=True, sampling=True, temperature=1.7, top_k=5,
    image_budget=140, video_frame_budget=560,
)
# tool: (upload, the call's arguments, the task's defaults, the task's scripted answer)
TOOLS = {
    "detect_objects": ("shapes.jpg", {"objects": "star"}, detection.DEFAULT_SETTINGS, SHAPES_ANSWER),
    "point_at": ("shapes.jpg", {"objects": "star"}, detection.DEFAULT_SETTINGS, POINTS_ANSWER),
    "read_text": ("document.png", {}, ocr.DEFAULT_SETTINGS, TABLE_ANSWER),
    "transcribe": ("speech.wav", {}, transcription.DEFAULT_SETTINGS, SPOKEN),
    "describe_video": ("clip.mp4", {}, video_question.DEFAULT_SETTINGS, "A ball rolls across."),
}


def chat_agent_tool_settings(tool: str, chat_settings: GenerationSettings) -> list[GenerationSettings]:
    """One agent turn of the Chat tab calling `tool` once: the settings of the tool's own model calls."""
    upload, arguments, _, answer = TOOLS[tool]
    backend = QueuedBackend().enqueue(write_call(tool, {"attachment": "0", **arguments}), answer, "Done.")
    asked = [{"role": "user", "content": [text_part("Look at this."), file_part(INPUT / upload)]}]
    choice = AgentChoice((tool,), AgentOptions(max_steps=2))
    *_, (history, _, _, _) = agent_turn(backend, chat_settings, asked, ChatOptions(), choice, NO_FILES)
    assert not any("failed" in ((m.get("metadata") or {}).get("title") or "") for m in history), history
    rounds = {0, len(backend.requests) - 1}  # the chat's own two rounds, around the tool's calls
    return [settings for index, (_, settings) in enumerate(backend.requests) if index not in rounds]


@pytest.mark.parametrize("tool", TOOLS)
def test_a_tool_runs_its_tasks_defaults_not_the_chats(tool):
    defaults = TOOLS[tool][2]
    cap = 2048  # above every task's own limit but OCR's 4096
    got = chat_agent_tool_settings(tool, CHAT.with_changes(max_new_tokens=cap))
    assert got == [defaults.with_changes(max_new_tokens=min(defaults.max_new_tokens, cap))]
    assert got[0].system_prompt == "" and not got[0].thinking and not got[0].keep_cache and got[0].tools == ()


@pytest.mark.parametrize(("cap", "expected"), [(100, 100), (8192, ocr.DEFAULT_SETTINGS.max_new_tokens)])
def test_the_visitors_token_cap_bounds_a_tool_but_never_raises_it(cap, expected):
    (got,) = chat_agent_tool_settings("read_text", CHAT.with_changes(max_new_tokens=cap))
    assert got.max_new_tokens == expected and got.image_budget == ocr.DEFAULT_SETTINGS.image_budget


def read_text_call(image_budget) -> tuple[QueuedBackend, dict]:
    backend = QueuedBackend().enqueue(
        write_call("read_text", {"attachment": "document.png", "image_budget": image_budget}), TABLE_ANSWER, "Done.")
    context = ToolContext(backend, (INPUT / "document.png",))
    steps = list(run_agent(backend, [{"role": "user", "content": "Read it"}], toolbox(["read_text"]), CHAT, context))
    (step,) = [s for s in steps if s.kind is StepKind.TOOL]
    return backend, step.result.response


@pytest.mark.parametrize("budget", [560, "560"])
def test_the_model_may_choose_read_texts_image_budget(budget):
    backend, response = read_text_call(budget)
    assert "Coffee" in response["markdown"]
    assert backend.requests[1][1] == ocr.DEFAULT_SETTINGS.with_changes(image_budget=560)


@pytest.mark.parametrize("budget", [300, "lots", True])
def test_a_budget_gemma_cannot_take_is_an_error_result_and_no_model_call(budget):
    backend, response = read_text_call(budget)
    assert "image_budget must be 0 (the task's own) or one of 70, 140, 280, 560, 1120" in response["error"]
    assert len(backend.requests) == 2  # the chat's two rounds, no reading in between
