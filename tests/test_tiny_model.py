"""The tiny Gemma 4 is small, deterministic and loads through the real Auto classes."""

import hashlib

import pytest
from transformers import AutoModelForMultimodalLM, AutoProcessor, Gemma4ForConditionalGeneration, GemmaTokenizer

from gemma_demo.tiny.family import TinyVariant
from gemma_demo.tiny.model import build_tiny_model
from gemma_demo.tiny.tokenizer import NAMED_SPECIAL_TOKENS, VIDEO_TOKEN

MAX_TINY_BYTES = 10 * 2**20


def folder_bytes(folder):
    return sum(f.stat().st_size for f in folder.iterdir())


@pytest.mark.parametrize("variant", list(TinyVariant))
def test_tiny_model_loads_like_a_real_checkpoint(tmp_path, variant):
    folder = build_tiny_model(tmp_path / variant.value, variant)
    assert folder_bytes(folder) < MAX_TINY_BYTES
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForMultimodalLM.from_pretrained(folder)
    assert isinstance(model, Gemma4ForConditionalGeneration)
    assert isinstance(processor.tokenizer, GemmaTokenizer)
    assert (model.config.audio_config is not None) == (variant is TinyVariant.E2B)
    assert type(processor).__name__ == "Gemma4Processor"


def test_tokenizer_carries_every_real_special_token(tmp_path):
    folder = build_tiny_model(tmp_path, "e2b")
    tokenizer = AutoProcessor.from_pretrained(folder).tokenizer
    for token in [*NAMED_SPECIAL_TOKENS.values(), VIDEO_TOKEN]:
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, f"{token} is split into {ids}"
        assert tokenizer.decode(ids) == token
    assert tokenizer.image_token == "<|image|>" and tokenizer.boa_token == "<|audio>"


def test_build_is_deterministic(tmp_path):
    digests = []
    for name in ("a", "b"):
        folder = build_tiny_model(tmp_path / name, "e2b")
        digests.append(hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_text_round_trips_through_the_tokenizer(tmp_path):
    tokenizer = AutoProcessor.from_pretrained(build_tiny_model(tmp_path, "e2b")).tokenizer
    text = 'Boxes: [{"box_2d": [10, 20, 300, 400], "label": "cat"}] — naïve 日本語 ✓'
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text



def test_a_cached_tiny_model_is_rebuilt_when_its_builder_changes(tmp_path, monkeypatch):
    from gemma_demo.tiny import model as tiny

    builds = []
    real_build = tiny.build_tiny_model
    monkeypatch.setattr(tiny, "build_tiny_model", lambda *args: builds.append(args) or real_build(*args))
    tiny.ensure_tiny_model("e2b", tmp_path)
    tiny.ensure_tiny_model("e2b", tmp_path)
    assert len(builds) == 1, "an unchanged builder reuses the cached checkpoint"
    monkeypatch.setattr(tiny, "builder_fingerprint", lambda: "a later builder")
    tiny.ensure_tiny_model("e2b", tmp_path)
    assert len(builds) == 2
