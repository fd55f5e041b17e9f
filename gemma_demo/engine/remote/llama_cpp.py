"""llama.cpp's `llama-server`: where it differs from vLLM, in one place.

- It names itself: its `/v1/models` entries are `owned_by: "llamacpp"`. The backend asks once,
  and only for a request with pictures or a video, where the difference matters.
- It reads a data URL as one file, so vLLM's form of a video (a `video/jpeg` list of frames)
  is refused; the video goes as its frames, each a picture after its `mm:ss` stamp.
- It reads each picture at a size of its own choosing (Gemma 4: 70–1120 soft tokens, by the
  picture's own size, bounded by the server's `--image-min-tokens` / `--image-max-tokens`).
  A request cannot set it, so the answer's status line says the image budget did not apply.
- Its refusals (HTTP 400, `{"error": {"message"}}`) are told in the app's words below; the
  patterns follow the messages of the llama.cpp vendored by llama-cpp-python 0.3.36.
"""

from __future__ import annotations

import re

import openai

from gemma_demo.errors import CapabilityError, GemmaDemoError, InvalidInputError

OWNER = "llamacpp"
PROBE_TIMEOUT_S = 5.0
BUDGET_NOTE = ("llama.cpp chose each picture's soft tokens itself (--image-min-tokens / --image-max-tokens "
               "on the server): the image and frame budgets do not apply")


def is_llama_cpp(client: openai.OpenAI) -> bool | None:
    """Whether the server is llama-server; None when it could not be asked (ask again later)."""
    try:
        models = client.with_options(max_retries=0, timeout=PROBE_TIMEOUT_S).models.list()
    except openai.APIError:
        return None
    return any(getattr(model, "owned_by", None) == OWNER for model in models)


def explain_refusal(message: str) -> GemmaDemoError | None:
    """llama-server's refusal in the app's words, or None when it is not one of its known ones."""
    too_long = re.search(r"request \((?P<prompt>\d+) tokens\) exceeds the available context size "
                         r"\((?P<limit>\d+) tokens\)", message)
    if too_long:
        return InvalidInputError(
            f"The prompt ({too_long['prompt']} tokens) does not fit the server's context of "
            f"{too_long['limit']} tokens. Use fewer video frames, a shorter audio clip or a shorter text, "
            "or start llama-server with a larger --ctx-size (divided among its --parallel slots unless "
            "--kv-unified)."
        )
    missing = re.search(r"(?P<kind>image|audio) input is not supported", message)
    if missing:
        what = "pictures" if missing["kind"] == "image" else "audio (only Gemma 4 E2B, E4B and 12B hear it)"
        return CapabilityError(f"This server reads no {what}: start llama-server with --mmproj and "
                               f"the model's mmproj GGUF, or pick a task without {missing['kind']}.")
    return None


__all__ = ["BUDGET_NOTE", "explain_refusal", "is_llama_cpp"]
