"""Schema-constrained JSON with the tiny random model, sampling on: the grammar does the work."""

from __future__ import annotations

import json

import jsonschema
import pytest

from gemma_demo.engine.base import last_update
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.errors import InvalidInputError
from gemma_demo.tasks.agent import validated_json

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


def test_max_new_tokens_still_caps_and_the_cut_answer_is_reported(tiny_backend):
    settings = GenerationSettings(sampling=True, max_new_tokens=3, json_schema=ARRAY)
    update = last_update(tiny_backend.stream(MESSAGES, settings))
    assert update.stats.new_tokens == 3
    with pytest.raises(InvalidInputError, match="not JSON that matches"):
        validated_json(update.answer, ARRAY)


def test_an_invalid_schema_gets_a_clear_message(tiny_backend):
    with pytest.raises(InvalidInputError, match="schema is not valid"):
        last_update(tiny_backend.stream(MESSAGES, GenerationSettings(json_schema={"type": "no-such-type"})))
