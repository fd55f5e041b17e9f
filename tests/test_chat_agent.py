"""Agent mode and JSON answers through `/chat`, with a model whose words (tool calls included) are scripted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from agent_helpers import QueuedBackend
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from gemma_demo.engine.base import Stats
from gemma_demo.engine.tool_syntax import write_call
from scripted_backend import SHAPES_ANSWER, SHAPES_SIZE, serve_scripted

INPUT = Path(__file__).resolve().parent.parent / "input"
THOUGHT = "<|channel>thought\nI should look for the shapes first.<channel|>"
SCHEMA = {"type": "object", "properties": {"shape": {"type": "string", "enum": ["circle", "star"]}},
          "required": ["shape"]}


@pytest.fixture(scope="module")
def backend():
    return QueuedBackend()


@pytest.fixture(scope="module")
def app(backend):
    demo = serve_scripted(backend)
    yield demo
    demo.close()


@pytest.fixture
def client(app, backend):
    backend.answers.clear()
    backend.requests.clear()
    return Client(app.local_url, verbose=False)


def resendable(history: list[dict]) -> list[dict]:
    for part in (p for m in history for p in m["content"] if p["type"] == "file"):
        part["file"] = handle_file(part["file"])
    return history


def titles(history: list[dict]) -> list[str]:
    return [(m.get("metadata") or {}).get("title") or "" for m in history]


def text_of(message: dict) -> str:
    return "".join(p["text"] for p in message["content"] if p["type"] == "text")


def test_an_agent_turn_shows_the_call_its_picture_and_the_answer(client, backend):
    backend.enqueue(
        THOUGHT + write_call("detect_objects", {"attachment": "0", "objects": "red circle, star"}),
        SHAPES_ANSWER,  # the detection task's own model call, run by the tool
        "There is a red circle on the left and a star on the right.",
    )
    history, meter, stats = client.predict(
        {"text": "Where are the circle and the star?", "files": [handle_file(INPUT / "shapes.jpg")]}, [],
        agent=True, tools=["detect_objects"], api_name="/chat")
    used = titles(history).index(next(t for t in titles(history) if t.startswith("Used detect_objects")))
    call = text_of(history[used])
    assert '"objects": "red circle, star"' in call and '"label": "red circle"' in call and "Time: " in call
    assert "Reasoning" in titles(history)[:used]  # the round's thought, kept before its call
    picture = history[used + 1]["content"][0]["file"]
    assert Image.open(picture).size == SHAPES_SIZE and history[used + 1]["role"] == "assistant"
    assert text_of(history[-1]).startswith("There is a red circle") and not titles(history)[-1]
    declared = backend.requests[0][1].tools
    assert [tool["function"]["name"] for tool in declared] == ["detect_objects"]
    assert "0: shapes.jpg" in json.dumps(backend.requests[0][0][-1]["content"][-1])
    # The conversation goes on with the tool messages and the drawn picture in its history.
    backend.enqueue("It is still a red circle.")
    history, _, _ = client.predict({"text": "And now?", "files": []}, resendable(history), api_name="/chat")
    assert text_of(history[-1]) == "It is still a red circle."
    prompt = json.dumps(backend.requests[-1][0], default=str)
    assert "Used detect_objects" not in prompt and "box_2d" not in prompt


def test_an_agent_turns_stats_add_up_its_model_calls_and_each_tool_shows_its_own(client, backend):
    # The scripted model reads 10 prompt tokens a call and writes a token a character.
    call, answer = write_call("detect_objects", {"attachment": "0", "objects": "star"}), "The star is on the right."
    backend.enqueue(call, SHAPES_ANSWER, answer)  # the round's call, the tool's own detection, the answer
    history, _, stats = client.predict(
        {"text": "Where is the star?", "files": [handle_file(INPUT / "shapes.jpg")]}, [],
        agent=True, tools=["detect_objects"], api_name="/chat")
    assert stats == f"30 prompt tokens · {len(call) + len(SHAPES_ANSWER) + len(answer)} new tokens"
    used = next(m for m in history if titles([m])[0].startswith("Used detect_objects"))
    assert f" · 10 prompt tokens · {len(SHAPES_ANSWER)} new tokens" in text_of(used)
    # A JSON answer after tools is one more model call; a tool that runs no model shows no figures.
    call, plain, value = write_call("calculate", {"expression": "1+1"}), "A star.", '{"shape": "star"}'
    backend.enqueue(call, plain, value)
    history, _, stats = client.predict({"text": "Which shape?", "files": []}, [], agent=True, tools=["calculate"],
                                       json_answer=True, json_schema=json.dumps(SCHEMA), api_name="/chat")
    assert stats == f"30 prompt tokens · {len(call) + len(plain) + len(value)} new tokens"
    used = next(m for m in history if titles([m])[0].startswith("Used calculate"))
    assert "Time: " in text_of(used) and "prompt tokens" not in text_of(used)


def test_figures_of_several_model_calls_add_up_as_one():
    first = Stats(prompt_tokens=100, new_tokens=11, time_to_first_token=0.5, elapsed=1.5, model_memory_bytes=2**30,
                  drafter="E2B", draft_proposed=8, draft_accepted=6, decode_tokens=10, decode_time=1.0)
    second = Stats(prompt_tokens=150, new_tokens=31, time_to_first_token=0.2, elapsed=2.5, model_memory_bytes=2**31,
                   draft_proposed=4, draft_accepted=1, decode_tokens=30, decode_time=2.0)
    total = first.followed_by(second)
    assert (total.prompt_tokens, total.new_tokens, total.elapsed) == (250, 42, pytest.approx(4.0))
    assert total.time_to_first_token == 0.5  # the turn's first token is its first call's
    assert total.tokens_per_second == pytest.approx(40 / 3.0)  # decoding alone: no prefill between the calls
    assert (total.draft_proposed, total.draft_accepted, total.drafter) == (12, 7, "E2B")
    assert total.model_memory_bytes == 2**31  # the latest reading
    # A first call that wrote nothing: the first token came in the second, after the first's time.
    assert Stats(elapsed=1.5).followed_by(second).time_to_first_token == pytest.approx(1.7)


def test_a_failing_tool_call_leaves_the_conversation_usable(client, backend):
    backend.enqueue(write_call("teleport", {"to": "Mars"}), "I cannot teleport.")
    history, _, _ = client.predict({"text": "Take me to Mars.", "files": []}, [], agent=True,
                                   tools=["calculate"], api_name="/chat")
    failed = next(m for m in history if titles([m])[0].startswith("teleport failed"))
    assert "Unknown tool 'teleport'" in text_of(failed)
    assert text_of(history[-1]) == "I cannot teleport."
    backend.enqueue("Hello again.")
    history, _, _ = client.predict({"text": "Hi", "files": []}, history, api_name="/chat")
    assert text_of(history[-1]) == "Hello again."


def test_a_json_answer_is_checked_and_shown_as_json(client, backend):
    backend.enqueue('{"shape": "star"}')
    history, _, _ = client.predict({"text": "Which shape?", "files": []}, [], json_answer=True,
                                   json_schema=json.dumps(SCHEMA), api_name="/chat")
    assert text_of(history[-1]) == '```json\n{\n  "shape": "star"\n}\n```'
    assert backend.requests[-1][1].json_schema == SCHEMA
    backend.enqueue('{"shape": "square"}')
    history, _, _ = client.predict({"text": "Which shape?", "files": []}, [], json_answer=True,
                                   json_schema=json.dumps(SCHEMA), api_name="/chat")
    assert "not JSON that matches the schema" in text_of(history[-1])


@pytest.mark.parametrize(("schema", "message"), [
    ('{"type": "object", ', "The JSON answer schema is not JSON"),
    ('{"type": "wrong"}', "The JSON answer schema is not valid"),
])
def test_an_invalid_schema_gets_a_clear_message(client, backend, schema, message):
    with pytest.raises(AppError, match=message):
        client.predict({"text": "Which shape?", "files": []}, [], json_answer=True, json_schema=schema,
                       api_name="/chat")
    assert backend.requests == []


def test_the_step_limit_ends_the_loop_with_a_message(client, backend):
    backend.enqueue(*[write_call("calculate", {"expression": "1+1"})] * 2)
    history, _, _ = client.predict({"text": "Add forever.", "files": []}, [], agent=True, tools=["calculate"],
                                   max_steps=2, api_name="/chat")
    assert sum(t.startswith("Used calculate") for t in titles(history)) == 1
    assert "Stopped after 2 steps" in text_of(history[-1])


def test_the_operators_extra_tools_are_offered_and_called(backend):
    """What `--mcp-server` adds reaches the Chat agent: offered by name, and called."""
    from gemma_demo.config import AppConfig
    from gemma_demo.engine.cache import ModelCache
    from gemma_demo.engine.options import LoadOptions
    from gemma_demo.tasks.tools.base import Tool
    from gemma_demo.ui.layout import build_demo
    from scripted_backend import SCRIPTED_MODEL

    cities = []

    def weather(city: str) -> dict:
        """Today's weather in a city.

        Args:
            city: The city's name.
        """
        cities.append(city)
        return {"sky": "clear"}

    backend.answers.clear()
    cache = ModelCache(loaders={"local": lambda name, options: backend})
    demo = build_demo(AppConfig(model=SCRIPTED_MODEL, load=LoadOptions()), cache, extra_tools=(Tool.from_function(weather),))
    demo.launch(prevent_thread_lock=True, quiet=True, share=False)
    try:
        backend.enqueue(write_call("weather", {"city": "Paris"}), "It is clear in Paris.")
        history, _, _ = Client(demo.local_url, verbose=False).predict(
            {"text": "What is the weather in Paris?", "files": []}, [], api_name="/chat", agent=True, tools=["weather"])
    finally:
        demo.close()
    assert cities == ["Paris"]
    assert "Used weather" in " ".join(titles(history))
    assert text_of(history[-1]) == "It is clear in Paris."
