"""The tiny model's chat template renders the exact text of Gemma 4's own template."""

import numpy as np
import pytest
from PIL import Image

from gemma_demo.tiny.model import build_processor


@pytest.fixture(scope="module")
def processor():
    return build_processor()


def render(processor, messages, **kwargs):
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)


def user(*parts):
    return {"role": "user", "content": list(parts)}


def text(value):
    return {"type": "text", "text": value}


GOLDEN = {
    "plain": (
        [user(text("Hello"))],
        {},
        "<bos><|turn>user\nHello<turn|>\n<|turn>model\n",
    ),
    "system": (
        [{"role": "system", "content": "You are terse."}, user(text("Hi"))],
        {},
        "<bos><|turn>system\nYou are terse.<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\n",
    ),
    "thinking": (
        [user(text("Why?"))],
        {"enable_thinking": True},
        "<bos><|turn>system\n<|think|>\n<turn|>\n<|turn>user\nWhy?<turn|>\n<|turn>model\n",
    ),
    "thinking_and_system": (
        [{"role": "system", "content": [text("Be brief.")]}, user(text("Why?"))],
        {"enable_thinking": True},
        "<bos><|turn>system\n<|think|>\nBe brief.<turn|>\n<|turn>user\nWhy?<turn|>\n<|turn>model\n",
    ),
    "image": (
        [user({"type": "image"}, text("Describe this image."))],
        {},
        "<bos><|turn>user\n<|image|>Describe this image.<turn|>\n<|turn>model\n",
    ),
    "audio": (
        [user({"type": "audio"}, text("Transcribe."))],
        {},
        "<bos><|turn>user\n<|audio|>Transcribe.<turn|>\n<|turn>model\n",
    ),
    "video": (
        [user({"type": "video"}, text("What happens?"))],
        {},
        "<bos><|turn>user\n<|video|>What happens?<turn|>\n<|turn>model\n",
    ),
    "two_turns": (
        [
            user(text("Hi")),
            {"role": "assistant", "content": "<|channel>thought\nplan<channel|>Hello!"},
            user(text("Bye")),
        ],
        {},
        "<bos><|turn>user\nHi<turn|>\n<|turn>model\nHello!<turn|>\n<|turn>user\nBye<turn|>\n<|turn>model\n",
    ),
}


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_golden_prompt(processor, case):
    messages, kwargs, expected = GOLDEN[case]
    assert render(processor, messages, **kwargs) == expected


def test_placeholders_expand_to_soft_tokens(processor):
    prompt = render(processor, [user({"type": "image"}, {"type": "audio"}, text("Go"))])
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
