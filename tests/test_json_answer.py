"""Schema-constrained JSON with the tiny random model, sampling on: the grammar does the work."""

from __future__ import annotations

import json

import jsonschema
import pytest
from agent_helpers import QueuedBackend

from gemma_demo.engine.base import last_update
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.errors import InvalidInputError
from gemma_demo.tasks.agent import AgentOptions, AgentStep, run_agent, validated_json
from gemma_demo.tasks.tools.base import ToolContext
from gemma_demo.tasks.tools.catalog import Toolbox

RUNS = 20
NESTED = {
    "type": "object",
    "properties": {
        "person": {
            "type": "object",
            "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
            "required": ["name", "age"],
            "additionalProperties": False,
        },
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 2},
    },
    "required": ["person"],
    "additionalProperties": False,
}
ENUM = {"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue"]}}, "required": ["colour"],
        "additionalProperties": False}
ARRAY = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 99}, "minItems": 3, "maxItems": 5}
CUT = '{"colour":'
MESSAGES = [{"role": "user", "content": [{"type": "text", "text": "Answer in JSON."}]}]


def answers(backend, schema, constrained: bool, runs: int) -> list[str]:
    settings = GenerationSettings(sampling=True, max_new_tokens=80, json_schema=schema if constrained else None)
    return [last_update(backend.stream(MESSAGES, settings)).answer for _ in range(runs)]


def valid(text: str, schema) -> bool:
    try:
        jsonschema.validate(json.loads(text), schema)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


@pytest.mark.parametrize("schema", [NESTED, ENUM, ARRAY], ids=["nested", "enum", "array"])
def test_constrained_answers_are_always_valid_and_unconstrained_ones_are_not(tiny_backend, schema):
    constrained = answers(tiny_backend, schema, True, RUNS)
    assert [text for text in constrained if not valid(text, schema)] == []
    unconstrained = answers(tiny_backend, schema, False, 5)
    assert not any(valid(text, schema) for text in unconstrained)


def test_no_whitespace_between_json_tokens(tiny_backend):
    schema = {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["a"],
              "additionalProperties": False}
    for text in answers(tiny_backend, schema, True, 5):
        assert text == json.dumps(json.loads(text), separators=(",", ":"))


def json_answer(backend, settings: GenerationSettings, schema) -> AgentStep:
    return list(run_agent(backend, MESSAGES, Toolbox(), settings, ToolContext(), AgentOptions(json_schema=schema)))[-1]


def test_max_new_tokens_still_caps_and_the_cut_answer_is_reported(tiny_backend):
    answer = json_answer(tiny_backend, GenerationSettings(sampling=True, max_new_tokens=3), ARRAY)
    assert answer.update.stats.new_tokens == 3
    assert "limit of 3 new tokens" in answer.message and "Raise the maximum of new tokens" in answer.message


@pytest.mark.parametrize(("max_new_tokens", "advised"), [(len(CUT), True), (1024, False)], ids=["cut", "ended"])
def test_more_tokens_are_advised_only_when_the_limit_ended_the_answer(max_new_tokens, advised):
    # The scripted backend counts one token per character, so the answer fills exactly `len(CUT)`.
    answer = json_answer(QueuedBackend().enqueue(CUT), GenerationSettings(max_new_tokens=max_new_tokens), ENUM)
    assert "not JSON that matches the schema" in answer.message and answer.json_answer is None
    assert ("Raise the maximum of new tokens" in answer.message) is advised


def test_an_answer_too_deep_to_check_gets_a_message_not_a_recursion_error():
    tree = {"type": "array", "items": {"$ref": "#"}}
    with pytest.raises(InvalidInputError, match="recursed too deeply"):
        validated_json("[" * 3000 + "]" * 3000, tree)


def test_an_invalid_schema_gets_a_clear_message(tiny_backend):
    with pytest.raises(InvalidInputError, match="schema is not valid"):
        last_update(tiny_backend.stream(MESSAGES, GenerationSettings(json_schema={"type": "no-such-type"})))


def test_a_grammar_that_gives_up_partway_is_named_not_blamed_on_the_token_limit(tiny_backend, monkeypatch):
    """llguidance's lexer can fail mid-answer; the row ends, and the person is told why."""

    class FailingMatcher:
        def is_error(self):
            return True

        def get_error(self):
            return "lexer: token limit of a regex exceeded"

    class GivenUp:
        matcher = FailingMatcher()

        def mask(self, scores):
            pass

        def consume(self, token):
            pass

    monkeypatch.setattr(tiny_backend, "_constraint", lambda settings: GivenUp())
    settings = GenerationSettings(max_new_tokens=3, json_schema={"type": "string"})
    with pytest.raises(InvalidInputError, match="regex"):
        last_update(tiny_backend.stream([{"role": "user", "content": "Hi"}], settings))
