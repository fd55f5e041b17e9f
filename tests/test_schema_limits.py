"""Hostile JSON answer schemas are refused before anything runs, each with a message that names its limit."""

from __future__ import annotations

import json

import pytest

from gemma_demo.engine.base import last_update
from gemma_demo.engine.grammar import JsonConstraint
from gemma_demo.engine.json_schema import (
    MAX_SCHEMA_DEPTH,
    check_schema,
    pattern_span,
    read_schema,
)
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.errors import InvalidInputError
from gemma_demo.ui.chat_agent import agent_choice

HOSTILE = {"type": "string", "pattern": "^(a{1000}){1000}$"}
DATE = {"type": "object", "properties": {"day": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}},
        "required": ["day"], "additionalProperties": False}
MESSAGES = [{"role": "user", "content": [{"type": "text", "text": "Answer in JSON."}]}]


def nested(levels: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(levels - 1):
        schema = {"type": "array", "items": schema}
    return schema


def refusal(schema) -> str:
    with pytest.raises(InvalidInputError) as caught:
        check_schema(schema)
    return str(caught.value)


@pytest.mark.parametrize(("pattern", "span"), [
    ("^(a{1000}){1000}$", 1_000_002),
    (r"^\d{4}-\d{2}-\d{2}$", 12),
    ("^[a-z{]{3}$", 5),  # a brace inside a class is not a count
    ("^a{2,5}b{3,}$", 10),  # the upper bound, or the lower one of an open repeat
    ("^(ab|c){0}x*$", 4),  # a repeat of none takes its item away; a loop counts once
    (r"^\{5}$", 5),  # an escaped brace is not a count
    ("^((ab){3}c){2}$", 16),
    ("^a{10}{10}$", 102),  # a count of a count multiplies too
])
def test_pattern_span_multiplies_counted_repeats(pattern, span):
    assert pattern_span(pattern) == span


def test_the_hostile_pattern_is_refused_with_its_figure_and_the_limit():
    message = refusal(HOSTILE)
    assert "1,000,002 characters" in message and "the limit is 5,000" in message and "(a{1000}){1000}" in message


def test_patterns_count_together_and_as_property_names():
    many = {"type": "object", "properties": {f"p{i}": {"type": "string", "pattern": "a{1000}"} for i in range(6)}}
    assert "6,000 characters" in refusal(many)
    named = {"type": "object", "patternProperties": {"^(b{100}){100}$": {"type": "integer"}}}
    assert "10,002 characters" in refusal(named)


def test_a_long_pattern_is_refused():
    assert "1,001 characters; the limit is 1,000" in refusal({"type": "string", "pattern": "a" * 1001})


def test_a_min_length_beside_a_pattern_is_limited_but_not_alone():
    message = refusal({"type": "string", "pattern": "^[a-z]+$", "minLength": 4000})
    assert "minLength of 4,000" in message and "limit there is 1,000" in message
    assert check_schema({"type": "string", "minLength": 4000})["minLength"] == 4000


def test_depth_is_refused_without_recursing():
    assert check_schema(nested(MAX_SCHEMA_DEPTH)) == nested(MAX_SCHEMA_DEPTH)
    assert f"more than {MAX_SCHEMA_DEPTH} levels" in refusal(nested(MAX_SCHEMA_DEPTH + 1))
    # Deeper than Python's recursion limit: a recursive walk or `json.dumps` would raise RecursionError.
    assert f"more than {MAX_SCHEMA_DEPTH} levels" in refusal(nested(5000))


def test_size_is_refused():
    message = refusal({"type": "string", "description": "x" * 70_000})
    assert "70,0" in message and "the limit is 64,000" in message


def test_the_page_refuses_before_the_model_runs():
    with pytest.raises(InvalidInputError, match="the limit is 5,000"):
        agent_choice(False, None, 5, True, json.dumps(HOSTILE))
    # Text nested past what `json.loads` can recurse into: a message, never RecursionError.
    with pytest.raises(InvalidInputError, match="nested more than"):
        read_schema("[" * 5000 + "]" * 5000)
    with pytest.raises(InvalidInputError, match="the limit is 64,000"):
        read_schema(json.dumps({"type": "string"}) + " " * 70_000)
    choice = agent_choice(False, None, 5, True, json.dumps(DATE))
    assert choice.options.json_schema == DATE


@pytest.mark.parametrize(("schema", "meaning", "detail"), [
    ({"not": {"type": "string"}}, "keywords it does not support", '"not"'),
    ({"type": "string", "pattern": "^(?=a)a$"}, "not a regular expression it can use", "look-around"),
    ({"type": "string", "minLength": 5, "maxLength": 2}, "no JSON value can match", "greater than maxLength"),
    ({"type": "string", "format": "nope"}, "format it does not know", "nope"),
    ({"$ref": "#/definitions/nope"}, "points at nothing", "/definitions/nope"),
    ({"type": "string", "pattern": "^(a{50}){50}$", "minLength": 1}, "together with minLength", "regex is empty"),
    ({"$ref": "#"}, "no answer can begin", "NoExtensionBias"),  # found by the first mask, not by validation
])
def test_grammar_errors_say_what_went_wrong(tiny_backend, schema, meaning, detail):
    with pytest.raises(InvalidInputError) as caught:
        JsonConstraint.build(tiny_backend.grammar_tokenizer(), schema)
    message = str(caught.value)
    assert meaning in message and detail in message and "<non-verbose/>" not in message


def test_the_engine_refuses_a_hostile_schema_before_generating(tiny_backend):
    with pytest.raises(InvalidInputError, match="the limit is 5,000"):
        last_update(tiny_backend.stream(MESSAGES, GenerationSettings(max_new_tokens=4, json_schema=HOSTILE)))
    # And keeps serving: the next request with a sound schema answers.
    update = last_update(tiny_backend.stream(MESSAGES, GenerationSettings(max_new_tokens=40, json_schema=DATE)))
    assert update.stats.new_tokens > 0
