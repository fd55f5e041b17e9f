"""The tiny models carry the published generation defaults, so the engine meets them in tests.

Read from `tests/data/reference/gemma4/gemma-4-E2B-E4B-it.generation_config.json`: sample at
temperature 1.0, top_p 0.95, top_k 64, and end on `<eos>`, `<turn|>` and `<|tool_response>`
(a tool call waits for its result).
"""

import json

import pytest
from transformers import AutoProcessor, GenerationConfig

from benchmarks.reference_configs import REAL_TOKEN_NAMES, REFERENCE_DIR
from gemma_demo.tiny.model import ensure_tiny_model

PUBLISHED = json.loads((REFERENCE_DIR / "gemma-4-E2B-E4B-it.generation_config.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("variant", ["e2b", "moe", "dense", "unified"])
def test_tiny_generation_config_is_the_published_one(tiny_root, variant):
    folder = ensure_tiny_model(variant, tiny_root)
    config = GenerationConfig.from_pretrained(folder)
    tokenizer = AutoProcessor.from_pretrained(folder).tokenizer
    for name in ("do_sample", "temperature", "top_p", "top_k"):
        assert getattr(config, name) == PUBLISHED[name], name
    assert tokenizer.convert_ids_to_tokens(config.eos_token_id) == [REAL_TOKEN_NAMES[i] for i in PUBLISHED["eos_token_id"]]
