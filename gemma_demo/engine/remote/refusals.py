"""vLLM's refusals (HTTP 400) in the words of the person using the app: what was too much,
and what to change, in the app or in the server's flags.

The patterns follow the messages vLLM 0.32 writes (its OpenAI server puts them in
`{"error": {"message": ...}}`); llama-server's are told by `llama_cpp`. A message none of
them matches is shown as the server wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from gemma_demo.engine.base import audio_unsupported_message
from gemma_demo.engine.remote import llama_cpp
from gemma_demo.errors import CapabilityError, GemmaDemoError, InvalidInputError

Explain = Callable[[re.Match[str], str], GemmaDemoError]


def _prompt_too_long(match: re.Match[str], model: str) -> GemmaDemoError:
    return InvalidInputError(
        f"The prompt ({match['prompt']} tokens) does not fit the server's context of {match['limit']} "
        "tokens. Use fewer video frames, a lower image budget, a shorter audio clip or a shorter "
        "text, or start vLLM with a larger --max-model-len."
    )


def _answer_too_long(match: re.Match[str], model: str) -> GemmaDemoError:
    return InvalidInputError(
        f"{match['asked']} new tokens do not fit the server's context of {match['limit']} tokens. "
        "Lower the maximum of new tokens, or start vLLM with a larger --max-model-len."
    )


def _no_audio_tower(match: re.Match[str], model: str) -> GemmaDemoError:
    return CapabilityError(audio_unsupported_message(model))


def _too_many_items(match: re.Match[str], model: str) -> GemmaDemoError:
    return InvalidInputError(
        f"The server takes at most {match['count']} {match['kind']} item(s) in one request. Send "
        "fewer, or start vLLM with a larger --limit-mm-per-prompt."
    )


def _video_too_long(match: re.Match[str], model: str) -> GemmaDemoError:
    return InvalidInputError(
        "The video has more frames than the server takes at once (vLLM reads at most 32 per "
        "video). Choose fewer frames."
    )


REFUSALS: tuple[tuple[re.Pattern[str], Explain], ...] = (
    (re.compile(r"maximum context length is (?P<limit>\d+) tokens.*?(?P<prompt>\d+) input tokens", re.S),
     _prompt_too_long),
    (re.compile(r"max_tokens=(?P<asked>\d+) cannot be greater than max_model_len=(?P<limit>\d+)"),
     _answer_too_long),
    (re.compile(r"does not have an audio tower"), _no_audio_tower),
    (re.compile(r"At most (?P<count>\d+) (?P<kind>\w+)\(s\) may be provided"), _too_many_items),
    (re.compile(r"video item with \d+ embedding tokens, which exceeds"), _video_too_long),
)


def explain_refusal(message: str, model: str) -> GemmaDemoError | None:
    """The refusal in the app's words, or None when it is not one of vLLM's or llama.cpp's known ones."""
    for pattern, explain in REFUSALS:
        match = pattern.search(message)
        if match:
            return explain(match, model)
    return llama_cpp.explain_refusal(message)


__all__ = ["explain_refusal"]
