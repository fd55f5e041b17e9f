"""What the tests of the app against real OpenAI-compatible servers (vLLM, llama.cpp) share."""

from __future__ import annotations

from collections.abc import Iterator

from gemma_demo.engine.base import Update
from gemma_demo.tiny.tokenizer import SPECIAL_TOKENS

# Bounded strings, an integer range and an enum: what grammar-constrained decoding keeps valid.
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "colour": {"enum": ["red", "green", "blue"]},
    },
    "required": ["name", "age", "colour"],
    "additionalProperties": False,
}


def final(results: Iterator) -> object:
    """A task's last result, which must say it is done."""
    *_, last = results
    assert last.done
    return last


def answer_is_clean(update: Update) -> bool:
    """No control token of the chat template leaked into the answer."""
    return not [token for token in SPECIAL_TOKENS if token in update.answer]
