"""Two visitors through the API (issue 22, item 1): same-size pictures and the same words never
answer one visitor from the other's kept cache, while each visitor's own follow-up still reuses it."""

from __future__ import annotations

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from app_helpers import serve
from gemma_demo.engine.base import last_update
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.tasks.conversation import file_part, model_messages, text_part

TOKENS = 10
QUESTION = "What is it?"
GREEDY = {"sampling": "off", "max_new_tokens": TOKENS}


@pytest.fixture(scope="module")
def models():
    return ModelCache()


@pytest.fixture(scope="module")
def app(tiny_options, models):
    demo = serve(tiny_options, cache=models)
    yield demo
    demo.close()


@pytest.fixture
def backend(app, models, tiny_options):
    return models.get("tiny", tiny_options)


def photo(folder, name: str, seed: int) -> str:
    """A picture of one size for every seed: the prompts' token ids are the same."""
    path = folder / name
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (60, 90, 3), dtype=np.uint8)).save(path)
    return str(path)


def cold_answer(backend, path: str) -> str:
    history = [{"role": "user", "content": [file_part(path), text_part(QUESTION)]}]
    messages = model_messages(history, backend.capabilities, backend.name)
    return last_update(backend.stream(messages, GenerationSettings(max_new_tokens=TOKENS))).answer


def ask(client: Client, path: str, history=()) -> list[dict]:
    message = {"text": QUESTION if not history else "Tell me more.", "files": [handle_file(path)] if path else []}
    history, _, _ = client.predict(message, list(history), api_name="/chat", **GREEDY)
    return history


def test_two_visitors_with_same_size_pictures_get_answers_about_their_own(app, backend, tmp_path):
    mine, theirs = photo(tmp_path, "mine.png", 1), photo(tmp_path, "theirs.png", 2)
    expected = cold_answer(backend, theirs)
    assert expected != cold_answer(backend, mine)  # otherwise the answers could not tell the pictures apart
    visitor_a, visitor_b = Client(app.local_url, verbose=False), Client(app.local_url, verbose=False)
    stats = backend.prefix_cache.stats
    reused = stats.reused
    history_a = ask(visitor_a, mine)
    history_b = ask(visitor_b, theirs)
    assert history_b[-1]["content"][0]["text"] == expected
    assert stats.reused == reused
    # The first visitor's follow-up still starts from its own kept cache.
    for part in (p for m in history_a for p in m["content"] if p["type"] == "file"):
        part["file"] = handle_file(part["file"])
    ask(visitor_a, "", history_a)
    assert stats.reused == reused + 1
