"""The tiny models' chat templates render exactly what Google's Gemma 4 templates render.

The golden strings in tests/data/chat_template_golden_{small,big}.json are the output of Google's
own "Gemma 4 Canonical Chat Template" (published 2026-07-09), not text written by us. They were
rendered once, for every shape in SHAPES, with `Gemma4Processor.apply_chat_template(messages,
tokenize=False, **kwargs)` (transformers 5.24.0) on this tiny processor with its chat_template
replaced by a byte-exact copy of Google's file, checked against the published sha256:

- small family (E2B, E4B; used for `tiny`): 18,569 bytes,
  sha256 0a2c8073c878ab1da004bee933a998606537bbb62016310352c7285c3f01c5b5
- big family (12B, 26B-A4B, 31B; used for `tiny-moe`, `tiny-dense`): 18,683 bytes,
  sha256 ae53464bf3be25802b3a5b37def7fd89667067d7577049b3b2d74c4d8de4c6d4

The copies came from the public repository raullenchai/Rapid-MLX (commit 11048992,
rapid_mlx/templates/gemma4_compact.jinja and gemma4_full.jinja), whose only change to Google's
text, a list-valued schema `type` in `format_parameters`, was undone before hashing. Google's
templates are not part of this repository; gemma_demo/tiny/chat_template.jinja is our own.
To add a shape, render it the same way with Google's file and add the string to both JSON files.
"""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gemma_demo.tiny.family import TinyVariant
from gemma_demo.tiny.model import build_processor

DATA = Path(__file__).with_name("data")
FAMILY = {TinyVariant.E2B: "small", TinyVariant.MOE: "big", TinyVariant.DENSE: "big"}


def text(value):
    return {"type": "text", "text": value}


def user(*parts):
    return {"role": "user", "content": list(parts)}


def assistant(content="", **extra):
    return {"role": "assistant", "content": content, **extra}


def call(name, arguments, call_id=None):
    entry = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if call_id:
        entry["id"] = call_id
    return entry


def tool(content, call_id=None, name=None):
    message = {"role": "tool", "content": content}
    if call_id:
        message["tool_call_id"] = call_id
    if name:
        message["name"] = name
    return message


GEN = {"add_generation_prompt": True}
THINK = {"add_generation_prompt": True, "enable_thinking": True}
NO_GEN = {"add_generation_prompt": False}

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Unit"},
                "days": {"type": "integer", "description": "Forecast length"},
                "precise": {"type": "boolean"},
            },
            "required": ["city"],
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search_images",
        "description": "Find pictures that match a query.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for"},
                "limit": {"type": "number", "description": "At most this many"},
                "filters": {
                    "type": "object",
                    "description": "Optional filters",
                    "properties": {
                        "color": {"type": "string", "enum": ["red", "green", "blue"]},
                        "min_width": {"type": "integer"},
                        "safe": {"type": "boolean", "nullable": True},
                    },
                    "required": ["color"],
                },
                "tags": {
                    "type": "array",
                    "description": "Tags that must all match",
                    "items": {"type": "string"},
                },
                "boxes": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                        "required": ["x", "y"],
                    },
                },
            },
            "required": ["query", "filters"],
        },
    },
}
NO_PARAMS = {
    "type": "function",
    "function": {"name": "get_time", "description": "The current time, no arguments."},
}

TRICKY_ARGS = {
    "query": 'cats {big}, "fluffy": yes',
    "limit": 2.5,
    "filters": {"color": "red", "min_width": 640, "safe": None},
    "tags": ["a,b", "c:d", "{e}"],
    "boxes": [{"x": 1, "y": -2}],
    "exact": True,
    "fuzzy": False,
}

WEATHER_CALL = [call("get_weather", {"city": "Paris", "unit": "celsius"}, "call_1")]


def _tool_loop(reasoning: bool):
    extra = {"reasoning_content": "I need the weather first."} if reasoning else {}
    return [
        user(text("Weather in Paris?")),
        assistant("", tool_calls=WEATHER_CALL, **extra),
        tool("18 degrees, sunny", "call_1"),
        assistant("It is 18 degrees and sunny in Paris.", reasoning_content="Easy answer."),
        user(text("And tomorrow?")),
    ]


SHAPES: dict[str, tuple[list, dict]] = {
    # --- plain turns -------------------------------------------------------------------
    "plain_gen": ([user(text("Hello"))], GEN),
    "plain_no_gen": ([user(text("Hello"))], NO_GEN),
    "user_content_string": ([{"role": "user", "content": "  Hello there  "}], GEN),
    "user_several_text_parts": ([user(text("One."), text(" Two. "))], GEN),
    "thinking_off_explicit": ([user(text("Hello"))], {"add_generation_prompt": True, "enable_thinking": False}),
    # --- system prompts ----------------------------------------------------------------
    "system_string": ([{"role": "system", "content": "  You are terse.  "}, user(text("Hi"))], GEN),
    "system_parts": (
        [{"role": "system", "content": [text("Be brief."), text(" Answer in French. ")]}, user(text("Hi"))],
        GEN,
    ),
    "system_one_part_thinking": (
        [{"role": "system", "content": [text("Be brief.")]}, user(text("Why?"))],
        THINK,
    ),
    "developer_role": ([{"role": "developer", "content": "Follow the rules."}, user(text("Hi"))], GEN),
    "system_only_no_gen": ([{"role": "system", "content": "Alone."}], NO_GEN),
    # --- thinking ----------------------------------------------------------------------
    "thinking_gen": ([user(text("Why?"))], THINK),
    "thinking_no_gen": ([user(text("Why?"))], {"enable_thinking": True}),
    "thinking_system_string": ([{"role": "system", "content": "Be brief."}, user(text("Why?"))], THINK),
    # --- media -------------------------------------------------------------------------
    "image": ([user({"type": "image"}, text("Describe this image."))], GEN),
    "text_then_image": ([user(text("Look:"), {"type": "image"})], GEN),
    "image_url_alias": ([user({"type": "image_url", "image_url": {"url": "x.png"}}, text("What?"))], GEN),
    "audio": ([user({"type": "audio"}, text("Transcribe."))], GEN),
    "input_audio_alias": ([user({"type": "input_audio"}, text("Transcribe."))], GEN),
    "video": ([user({"type": "video"}, text("What happens?"))], GEN),
    "several_media": (
        [user({"type": "image"}, {"type": "image"}, {"type": "audio"}, {"type": "video"}, text("Compare."))],
        GEN,
    ),
    "image_thinking": ([user({"type": "image"}, text("Count the cats."))], THINK),
    # --- multi-turn and reasoning ------------------------------------------------------
    "two_turns_inline_thought": (
        [user(text("Hi")), assistant("<|channel>thought\nplan<channel|>Hello!"), user(text("Bye"))],
        GEN,
    ),
    "reasoning_stripped_from_history": (
        [user(text("Hi")), assistant("Hello!", reasoning_content="Greet back."), user(text("Bye"))],
        THINK,
    ),
    "final_assistant_reasoning_no_gen": (
        [user(text("What is 2+2?")), assistant("4", reasoning_content="Two plus two is four.")],
        NO_GEN,
    ),
    "final_assistant_reasoning_key": (
        [user(text("What is 2+2?")), assistant("4", reasoning="Add them.")],
        {"add_generation_prompt": False, "enable_thinking": True},
    ),
    "assistant_text_parts": ([user(text("Hi")), assistant([text("Hello "), text("again.")])], NO_GEN),
    "consecutive_assistants": (
        [user(text("Hi")), assistant("Hello."), assistant("Anything else?")],
        NO_GEN,
    ),
    "consecutive_assistants_then_user": (
        [user(text("Hi")), assistant("Hello."), assistant("Anything else?"), user(text("No."))],
        GEN,
    ),
    "long_history_thinking": (
        [
            {"role": "system", "content": "Be kind."},
            user(text("A")),
            assistant("a", reasoning_content="r1"),
            user({"type": "image"}, text("B")),
            assistant("b", reasoning_content="r2"),
            user(text("C")),
        ],
        THINK,
    ),
    # --- tools declared ----------------------------------------------------------------
    "tools_declared": ([user(text("Weather in Paris?"))], {**GEN, "tools": [WEATHER]}),
    "tools_nested_schema": ([user(text("Find red cats."))], {**GEN, "tools": [SEARCH]}),
    "tools_several_with_system_thinking": (
        [{"role": "system", "content": "Use tools."}, user(text("Go"))],
        {**THINK, "tools": [WEATHER, SEARCH, NO_PARAMS]},
    ),
    # --- tool calls and responses ------------------------------------------------------
    "tool_call_tool_role_gen": (
        [user(text("Weather in Paris?")), assistant("", tool_calls=WEATHER_CALL), tool("18 degrees, sunny", "call_1")],
        {**GEN, "tools": [WEATHER]},
    ),
    "tool_call_tool_role_answered": (
        [
            user(text("Weather in Paris?")),
            assistant("", tool_calls=WEATHER_CALL),
            tool("18 degrees, sunny", "call_1"),
            assistant("It is 18 degrees and sunny."),
        ],
        {**NO_GEN, "tools": [WEATHER]},
    ),
    "tool_call_tricky_arguments": (
        [
            user(text("Find red cats.")),
            assistant("", tool_calls=[call("search_images", TRICKY_ARGS, "c9")]),
            tool('{"found": 3}', "c9"),
        ],
        {**GEN, "tools": [SEARCH]},
    ),
    "parallel_calls_two_tool_messages": (
        [
            user(text("Weather in Paris and Rome?")),
            assistant(
                "Checking both.",
                tool_calls=[
                    call("get_weather", {"city": "Paris"}, "a"),
                    call("get_weather", {"city": "Rome"}, "b"),
                ],
            ),
            tool("18C", "a"),
            tool("25C", "b"),
        ],
        {**GEN, "tools": [WEATHER]},
    ),
    "tool_role_unknown_id_uses_name": (
        [
            user(text("Time?")),
            assistant("", tool_calls=[call("get_time", {}, "t1")]),
            tool("12:00", "zzz", name="clock"),
        ],
        {**GEN, "tools": [NO_PARAMS]},
    ),
    "tool_role_content_parts": (
        [
            user(text("Find red cats.")),
            assistant("", tool_calls=[call("search_images", {"query": "red cats"}, "s1")]),
            tool([text("Found one: "), text("cat.png"), {"type": "image"}], "s1"),
        ],
        {**GEN, "tools": [SEARCH]},
    ),
    "tool_responses_on_assistant": (
        [
            user(text("Weather in Paris?")),
            assistant(
                "",
                tool_calls=WEATHER_CALL,
                tool_responses=[{"name": "get_weather", "response": {"temp": 18, "sky": "sunny, warm"}}],
            ),
        ],
        {**GEN, "tools": [WEATHER]},
    ),
    "tool_responses_on_assistant_then_answer": (
        [
            user(text("Weather in Paris?")),
            assistant("", tool_calls=WEATHER_CALL, tool_responses=[{"name": "get_weather", "response": "18C"}]),
            assistant("It is 18C."),
            user(text("Thanks")),
        ],
        {**GEN, "tools": [WEATHER]},
    ),
    "tool_responses_without_name": (
        [
            user(text("Time?")),
            assistant("", tool_calls=[call("get_time", {})], tool_responses=[{"response": ["12", None, True]}]),
        ],
        {**GEN, "tools": [NO_PARAMS]},
    ),
    "unanswered_call_gen": (
        [user(text("Weather in Paris?")), assistant("", tool_calls=WEATHER_CALL)],
        {**GEN, "tools": [WEATHER]},
    ),
    "unanswered_call_no_gen": (
        [user(text("Weather in Paris?")), assistant("Let me check.", tool_calls=WEATHER_CALL)],
        {**NO_GEN, "tools": [WEATHER]},
    ),
    "thinking_after_tool_result": (
        [user(text("Weather in Paris?")), assistant("", tool_calls=WEATHER_CALL), tool("18C", "call_1")],
        {**THINK, "tools": [WEATHER]},
    ),
    "thinking_after_tool_responses_legacy": (
        [
            user(text("Weather in Paris?")),
            assistant("", tool_calls=WEATHER_CALL, tool_responses=[{"name": "get_weather", "response": "18C"}]),
        ],
        {**THINK, "tools": [WEATHER]},
    ),
    "current_tool_call_keeps_reasoning": (
        [
            user(text("Weather in Paris?")),
            assistant("", tool_calls=WEATHER_CALL, reasoning_content="Call the tool."),
            tool("18C", "call_1"),
        ],
        {**THINK, "tools": [WEATHER]},
    ),
    "preserve_thinking_off": (_tool_loop(True), {**THINK, "tools": [WEATHER]}),
    "preserve_thinking_on": (_tool_loop(True), {**THINK, "tools": [WEATHER], "preserve_thinking": True}),
    "preserve_thinking_on_no_reasoning": (
        _tool_loop(False),
        {**THINK, "tools": [WEATHER], "preserve_thinking": True},
    ),
    "two_tool_rounds": (
        [
            user(text("Plan a picnic in Paris.")),
            assistant("", tool_calls=[call("get_weather", {"city": "Paris", "days": 2}, "w")]),
            tool("sunny", "w"),
            assistant("", tool_calls=[call("search_images", {"query": "park", "tags": ["grass"]}, "p")]),
            tool("park.png", "p"),
            assistant("Go to the park; it will be sunny."),
        ],
        {**NO_GEN, "tools": [WEATHER, SEARCH]},
    ),
    "tool_result_then_user": (
        [
            user(text("Weather in Paris?")),
            assistant("", tool_calls=WEATHER_CALL),
            tool("18C", "call_1"),
            user(text("Never mind.")),
        ],
        {**GEN, "tools": [WEATHER]},
    ),
    "tool_responses_then_user": (
        [
            user(text("Weather in Paris?")),
            assistant("", tool_calls=WEATHER_CALL, tool_responses=[{"name": "get_weather", "response": "18C"}]),
            user(text("Never mind.")),
        ],
        {**GEN, "tools": [WEATHER]},
    ),
    "unanswered_call_then_user": (
        [user(text("Weather in Paris?")), assistant("", tool_calls=WEATHER_CALL), user(text("Stop."))],
        {**GEN, "tools": [WEATHER]},
    ),
    "tool_call_arguments_none": (
        [user(text("Time?")), assistant("", tool_calls=[call("get_time", None, "t")]), tool("noon", "t")],
        {**GEN, "tools": [NO_PARAMS]},
    ),
    "orphan_tool_message": ([user(text("Hi")), tool("stray", "x"), assistant("Hello.")], NO_GEN),
    "system_in_middle": (
        [user(text("Hi")), {"role": "system", "content": "Now be formal."}, user(text("Hello"))],
        GEN,
    ),
    "final_assistant_inline_thought_and_reasoning": (
        [
            user(text("Hi")),
            assistant("<|channel>thought\nold<channel|>  Hello!  ", reasoning_content="  spaced  "),
        ],
        NO_GEN,
    ),
}


def golden(family):
    return json.loads((DATA / f"chat_template_golden_{family}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module", params=list(TinyVariant), ids=lambda variant: variant.value)
def variant_processor(request):
    return request.param, build_processor(request.param)


@pytest.fixture(scope="module")
def processor():
    return build_processor(TinyVariant.E2B)


@pytest.mark.parametrize("family", ["small", "big"])
def test_golden_files_cover_every_shape(family):
    assert sorted(golden(family)) == sorted(SHAPES)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_prompt_equals_googles(variant_processor, shape):
    variant, processor = variant_processor
    messages, kwargs = copy.deepcopy(SHAPES[shape])
    rendered = processor.apply_chat_template(messages, tokenize=False, **kwargs)
    assert rendered == golden(FAMILY[variant])[shape]


def test_placeholders_expand_to_soft_tokens(processor):
    prompt = processor.apply_chat_template(
        [user({"type": "image"}, {"type": "audio"}, text("Go"))], tokenize=False, add_generation_prompt=True
    )
    inputs = processor(
        text=prompt,
        images=[Image.new("RGB", (320, 240))],
        audio=[np.zeros(16_000, dtype=np.float32)],
        return_tensors="pt",
    )
    ids = inputs["input_ids"][0].tolist()
    assert ids.count(processor.image_token_id) > 0
    assert ids.count(processor.audio_token_id) == 25  # 25 audio tokens per second


def test_response_template_separates_reasoning(processor):
    parsed = processor.parse_response(
        "<|channel>thought\nLet me look.<channel|>A cat.<turn|>", prefix="<|turn>model\n"
    )
    assert parsed["reasoning_content"] == "Let me look."
    assert parsed["content"] == "A cat."
