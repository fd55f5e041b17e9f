"""Agent mode over an OpenAI-compatible server: tools and schema out, `tool_calls` back."""

from __future__ import annotations

import json

from openai.types.chat import ChatCompletionChunk

from gemma_demo.engine.remote.client import StreamState, request_options
from gemma_demo.engine.remote.encode import to_openai_messages
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.engine.tool_syntax import ToolCall
from gemma_demo.tasks.tools.catalog import toolbox

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}}


def chunk(index: int, name: str | None, arguments: str) -> ChatCompletionChunk:
    call = {"index": index, "type": "function", "function": {"name": name, "arguments": arguments}}
    return ChatCompletionChunk.model_validate({
        "id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
        "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}],
    })


def test_tools_and_schema_are_sent():
    tools = toolbox(["calculate"]).schemas
    options = request_options(GenerationSettings(tools=tools, json_schema=SCHEMA), None, True)
    assert options["tools"] == list(tools)
    assert options["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}}
    assert "tools" not in request_options(GenerationSettings(), None, True)


def test_streamed_tool_calls_become_update_calls():
    state = StreamState(started=0.0)
    for piece in (chunk(0, "calculate", '{"expres'), chunk(0, None, 'sion": "2+2"}')):
        state.add(piece)
    assert state.update(done=False).tool_calls == (ToolCall("calculate", {"expression": "2+2"}),)
    state.add(chunk(1, "current_time", '{"zone": '))
    assert state.update(done=True).tool_calls[1].error.startswith("unreadable arguments")


def test_a_tool_turn_becomes_a_call_and_tool_messages():
    turn = {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "calculate", "arguments": {"expression": "6*7"}}}],
            "tool_responses": [{"name": "calculate", "response": {"result": 42}}]}
    call, answer = to_openai_messages([turn])
    assert call["tool_calls"][0]["function"] == {"name": "calculate", "arguments": json.dumps({"expression": "6*7"})}
    assert answer == {"role": "tool", "tool_call_id": call["tool_calls"][0]["id"], "content": '{"result": 42}'}
