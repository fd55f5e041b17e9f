"""With the tiny model: the prompt holds the declarations, the call and its result in Gemma 4's format.

The expected strings are written out by hand from the format Google documents, not produced
by our own writer, so the template and the loop's messages are both checked against it.
"""

from __future__ import annotations

from gemma_demo.engine.base import Update
from gemma_demo.engine.local import build_inputs
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.engine.tool_syntax import ToolCall
from gemma_demo.tasks.agent import tool_turn
from gemma_demo.tasks.tools.base import ToolResult
from gemma_demo.tasks.tools.catalog import toolbox

Q = '<|"|>'
DECLARATION = (
    f"<|tool>declaration:current_time{{description:{Q}The current date and time in a time zone.{Q},"
    f"parameters:{{properties:{{zone:{{description:{Q}An IANA time zone name such as \"Europe/Paris\" or "
    f"\"America/New_York\".{Q},type:{Q}STRING{Q}}}}},type:{Q}OBJECT{Q}}}}}<tool|>"
)
CALL = f"<|tool_call>call:current_time{{zone:{Q}Europe/Paris{Q}}}<tool_call|>"
RESPONSE = f"<|tool_response>response:current_time{{time:{Q}12:00{Q},zone:{Q}Europe/Paris{Q}}}<tool_response|>"


def test_the_prompt_holds_declarations_call_and_response_in_gemma4_format(tiny_backend):
    tools = toolbox(["current_time", "calculate"])
    call = ToolCall("current_time", {"zone": "Europe/Paris"})
    result = ToolResult(call, {"zone": "Europe/Paris", "time": "12:00"})
    history = [
        {"role": "user", "content": [{"type": "text", "text": "What time is it in Paris?"}]},
        tool_turn(Update(reasoning="Use the clock."), [result]),
    ]
    settings = GenerationSettings(tools=tools.schemas)
    ids = build_inputs(tiny_backend.processor, history, settings)["input_ids"][0]
    prompt = tiny_backend.processor.tokenizer.decode(ids, skip_special_tokens=False)
    assert prompt.startswith("<bos><|turn>system\n")
    assert DECLARATION in prompt and "<|tool>declaration:calculate{" in prompt
    # The call and its result continue the model's turn, which stays open for its answer.
    assert prompt.endswith(
        f"<|turn>user\nWhat time is it in Paris?<turn|>\n<|turn>model\n<|channel>thought\nUse the clock.\n<channel|>{CALL}{RESPONSE}"
    )
