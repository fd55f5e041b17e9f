"""The agent loop with a scripted model: tool rounds, failures, timeouts, Stop and the step limit."""

from __future__ import annotations

import threading

import pytest
from agent_helpers import QueuedBackend

from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.engine.tool_syntax import write_call
from gemma_demo.tasks.agent import AgentOptions, StepKind, run_agent
from gemma_demo.tasks.tools.base import Tool, ToolContext
from gemma_demo.tasks.tools.catalog import Toolbox, toolbox

USER = [{"role": "user", "content": [{"type": "text", "text": "What is 6*7, and the time in Paris?"}]}]
THOUGHT = "<|channel>thought\nI should calculate first.<channel|>"


def run(backend, tools: Toolbox, **options):
    return list(run_agent(backend, USER, tools, GenerationSettings(), ToolContext(), AgentOptions(**options)))


def finished(steps):
    return [s for s in steps if s.kind is StepKind.TOOL]


def test_two_tool_rounds_then_an_answer():
    backend = QueuedBackend().enqueue(
        THOUGHT + write_call("calculate", {"expression": "6*7"}),
        write_call("current_time", {"zone": "Europe/Paris"}),
        "6*7 is 42, and it is now afternoon in Paris.",
    )
    steps = run(backend, toolbox(["calculate", "current_time"]))
    tools = finished(steps)
    assert [s.call.name for s in tools] == ["calculate", "current_time"]
    assert tools[0].result.response == {"expression": "6*7", "result": 42}
    assert tools[1].result.response["zone"] == "Europe/Paris"
    assert steps[-1].kind is StepKind.ANSWER and steps[-1].update.answer.startswith("6*7 is 42")
    # The second round sees the first call, its result and its reasoning, as the template wants them.
    second_history, second_settings = backend.requests[1]
    turn = second_history[-1]
    assert turn["tool_calls"] == [{"type": "function", "function": {"name": "calculate", "arguments": {"expression": "6*7"}}}]
    assert turn["tool_responses"] == [{"name": "calculate", "response": {"expression": "6*7", "result": 42}}]
    assert turn["reasoning"] == "I should calculate first."
    assert [t["function"]["name"] for t in second_settings.tools] == ["calculate", "current_time"]
    assert len(backend.requests[2][0]) == 3  # user, round 1, round 2


def test_an_unknown_tool_gets_an_error_result_and_the_loop_goes_on():
    backend = QueuedBackend().enqueue(write_call("launch_rockets", {"count": 3}), "I cannot do that.")
    steps = run(backend, toolbox(["calculate"]))
    (step,) = finished(steps)
    assert "Unknown tool 'launch_rockets'" in step.result.response["error"]
    assert steps[-1].update.answer == "I cannot do that."


def test_a_tool_that_raises_gets_an_error_result():
    def explode(text: str) -> dict:
        """Fails.

        Args:
            text: Anything.
        """
        raise RuntimeError("disk on fire")

    backend = QueuedBackend().enqueue(write_call("explode", {"text": "x"}), "It failed.")
    (step,) = finished(run(backend, Toolbox((Tool.from_function(explode),))))
    assert step.result.response == {"error": "explode failed: RuntimeError: disk on fire"}


def test_wrong_arguments_get_an_error_result():
    backend = QueuedBackend().enqueue(write_call("calculate", {"formula": "1+1"}), "Oops.")
    (step,) = finished(run(backend, toolbox(["calculate"])))
    assert "Wrong arguments for calculate" in step.result.response["error"]


def test_a_tool_that_times_out_gets_an_error_result():
    release = threading.Event()

    def wait_forever(text: str) -> dict:
        """Blocks until the test ends.

        Args:
            text: Anything.
        """
        release.wait(60)
        return {}

    backend = QueuedBackend().enqueue(write_call("wait_forever", {"text": "x"}), "Too slow.")
    try:
        (step,) = finished(run(backend, Toolbox((Tool.from_function(wait_forever),)), tool_timeout_s=0.05))
    finally:
        release.set()
    assert step.result.response == {"error": "The tool did not finish within 0.05 s."}


def test_stop_while_a_tool_runs_ends_the_loop_and_cancels_the_tool():
    started, cancelled = threading.Event(), threading.Event()

    def slow(text: str) -> dict:
        """Runs until cancelled.

        Args:
            text: Anything.
        """
        from gemma_demo.tasks.tools.base import current_context

        started.set()
        if current_context().cancel.wait(60):
            cancelled.set()
        return {}

    backend = QueuedBackend().enqueue(write_call("slow", {"text": "x"}), "never asked")
    steps = run_agent(backend, USER, Toolbox((Tool.from_function(slow),)), GenerationSettings(), ToolContext())
    for step in steps:
        if step.kind is StepKind.TOOL_RUNNING:
            break
    assert started.wait(30)
    steps.close()
    assert cancelled.wait(30)
    assert len(backend.requests) == 1 and list(backend.answers) == ["never asked"]


def test_stop_while_the_model_writes_closes_its_stream():
    backend = QueuedBackend().enqueue("A long answer that is being written")
    steps = run_agent(backend, USER, toolbox(["calculate"]), GenerationSettings(), ToolContext())
    assert next(steps).kind is StepKind.MODEL
    steps.close()
    assert backend.closed.is_set()


def test_the_step_limit_ends_the_loop():
    call = write_call("calculate", {"expression": "1+1"})
    backend = QueuedBackend().enqueue(call, call, call, "unused")
    steps = run(backend, toolbox(["calculate"]), max_steps=3)
    assert len(finished(steps)) == 2 and len(backend.requests) == 3
    assert "Stopped after 3 steps" in steps[-1].message


def test_a_call_cut_off_by_the_token_limit_is_not_run():
    backend = QueuedBackend().enqueue('<|tool_call>call:calculate{expression:<|"|>2**')
    steps = run(backend, toolbox(["calculate"]))
    assert not finished(steps) and "cut off" in steps[-1].message


def test_unknown_builtin_names_are_refused():
    with pytest.raises(Exception, match="Unknown tool 'shell'"):
        toolbox(["calculate", "shell"])
