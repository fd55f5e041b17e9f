"""Gemma 4's tool-call syntax: real-format calls, broken ones, and round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gemma_demo.engine.tool_syntax import CALL_OPEN, QUOTE, ToolCall, parse_value, scan_calls, write_call, write_value

Q = QUOTE


def test_documented_example():
    scan = scan_calls(f"<|tool_call>call:get_current_weather{{location:{Q}London{Q}}}<tool_call|>")
    assert scan.calls == (ToolCall("get_current_weather", {"location": "London"}),)
    assert scan.text == ""


def test_nested_values_numbers_booleans_null():
    text = (
        f"<|tool_call>call:plan{{route:{{stops:[{Q}A{Q},{Q}B{Q}],legs:[{{km:12.5,toll:true}},{{km:-3,toll:false}}]}},"
        f"count:3,ratio:1e-05,note:null,empty:{{}},none:[]}}<tool_call|>"
    )
    (call,) = scan_calls(text).calls
    assert call.arguments == {
        "route": {"stops": ["A", "B"], "legs": [{"km": 12.5, "toll": True}, {"km": -3, "toll": False}]},
        "count": 3, "ratio": 1e-05, "note": None, "empty": {}, "none": [],
    }
    assert call.runnable


def test_strings_may_hold_braces_commas_colons_and_quotes():
    tricky = 'a {b}, c: "d" [e] \'f\' } <tool_call|> ,x:1'
    (call,) = scan_calls(f"<|tool_call>call:say{{text:{Q}{tricky}{Q},n:1}}<tool_call|>").calls
    assert call.arguments == {"text": tricky, "n": 1}


def test_several_calls_and_the_text_around_them():
    text = (
        f"Let me check.<|tool_call>call:current_time{{zone:{Q}Europe/Paris{Q}}}<tool_call|>"
        f"<|tool_call>call:calculate{{expression:{Q}2*(3+4){Q}}}<tool_call|>"
    )
    scan = scan_calls(text)
    assert [c.name for c in scan.calls] == ["current_time", "calculate"]
    assert scan.calls[1].arguments == {"expression": "2*(3+4)"}
    assert scan.text == "Let me check."


def test_a_call_cut_off_by_the_token_limit_is_reported_not_runnable():
    scan = scan_calls(f"<|tool_call>call:detect_objects{{image:0,objects:{Q}cat, d")
    (call,) = scan.calls
    assert (call.name, call.complete, call.runnable) == ("detect_objects", False, False)


def test_a_malformed_complete_call_carries_an_error():
    (call,) = scan_calls("<|tool_call>call:calculate{expression 2+2}<tool_call|>after").calls
    assert call.complete and call.error and not call.runnable


def test_plain_json_strings_are_read_too():
    assert parse_value('{"city":"Paris","n":[1,2]}') == {"city": "Paris", "n": [1, 2]}


def test_text_after_a_value_is_refused():
    with pytest.raises(ValueError):
        parse_value("{a:1} trailing")


def test_write_call_matches_the_documented_shape():
    assert write_call("get_current_weather", {"location": "London"}) == (
        f"<|tool_call>call:get_current_weather{{location:{Q}London{Q}}}<tool_call|>"
    )


# Strings in the format cannot hold the quote marker itself: nothing escapes it.
texts = st.text().filter(lambda s: QUOTE not in s)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4), max_leaves=20
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_any_written_value_parses_back_equal(value):
    assert parse_value(write_value(value)) == value


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(texts, values, max_size=4), st.text(max_size=20).filter(lambda s: "<|tool_call>" not in s))
def test_written_calls_scan_back_equal(arguments, before):
    scan = scan_calls(before + write_call("tool_x", arguments))
    assert scan.calls == (ToolCall("tool_x", arguments),)
    assert scan.text == before


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(list('{}[],:"<|>_ ab1-.e\\') + [Q, "<|tool_call>", "<tool_call|>", "call:x", "true"])))
def test_scanning_never_raises(pieces):
    scan_calls("".join(pieces))


def test_deep_nesting_is_refused_not_recursed():
    (call,) = scan_calls("<|tool_call>call:x{a:" + "[" * 5000 + "]" * 5000 + "}<tool_call|>").calls
    assert "nested" in call.error


# Python reads integers of at most 4,300 digits; a model may write longer ones.
@pytest.mark.parametrize("number", ["1" * 4301, "-" + "9" * 5000, "1" * 4301 + "0" * 100])
def test_an_integer_too_long_to_read_is_an_error_call_not_an_exception(number):
    text = f"before<|tool_call>call:calculate{{n:[1,{number}]}}<tool_call|>after<|tool_call>call:ok{{a:1}}<tool_call|>"
    scan = scan_calls(text)
    assert scan.calls[0].complete and "digits, too long to read" in scan.calls[0].error
    assert scan.calls[1] == ToolCall("ok", {"a": 1})
    assert scan.text == "beforeafter"
    with pytest.raises(ValueError, match="too long to read"):
        parse_value(number)


def test_long_floats_and_huge_exponents_are_read_or_refused():
    assert parse_value("1." + "5" * 5000) == 1.5555555555555556
    with pytest.raises(ValueError, match="too large"):
        parse_value("9" * 5000 + ".0")


huge_numbers = st.builds(
    lambda sign, digits, tail: sign + "7" * digits + tail,
    st.sampled_from(["", "-"]), st.integers(4301, 6000), st.sampled_from(["", ".5", "e9", "e999"]),
)
deep_openings = st.integers(1, 150).flatmap(lambda n: st.sampled_from(["[" * n, "{k:" * n, "[{a:" * n]))
long_strings = st.integers(0, 20_000).map(lambda n: Q + "s" * n + Q) | st.integers(0, 20_000).map(
    lambda n: '"' + "\\u00e9" * (n // 6) + '"')
pieces = st.sampled_from(["<|tool_call>call:f{", "}<tool_call|>", "a:", ",", "]", "}", ":", "<tool_call|>", Q, "null"])


@settings(max_examples=200, deadline=None)
@given(st.lists(huge_numbers | deep_openings | long_strings | pieces, max_size=12))
def test_scanning_hostile_texts_never_raises(parts):
    text = "".join(parts)
    scan = scan_calls(text)
    # Every opening marker starts a call (read, refused or cut off) and none is left in the text.
    assert bool(scan.calls) == (CALL_OPEN in text)
    assert CALL_OPEN not in scan.text


@settings(max_examples=100, deadline=None)
@given(huge_numbers, st.integers(0, 100))
def test_a_huge_number_at_any_depth_makes_one_unrunnable_complete_call(number, depth):
    text = f"<|tool_call>call:f{{a:{'[' * depth}{number}{']' * depth}}}<tool_call|>"
    (call,) = scan_calls(text).calls
    assert call.complete and not call.runnable
    assert any(reason in call.error for reason in ("too long to read", "too large", "nested"))
