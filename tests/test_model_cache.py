"""The shared model cache: lazy, loads once under concurrency, frees a model on switch."""

import gc
import threading
import weakref

import pytest

from gemma_demo.errors import ModelUnavailableError
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.options import LoadOptions


def test_concurrent_first_requests_load_once(tiny_options):
    cache = ModelCache()
    barrier = threading.Barrier(4)
    results = []

    def request():
        barrier.wait()
        results.append(cache.get("tiny", tiny_options))

    threads = [threading.Thread(target=request) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.loads == 1
    assert len({id(backend) for backend in results}) == 1


def test_switching_models_releases_the_previous_one(tiny_options):
    cache = ModelCache()
    first = weakref.ref(cache.get("tiny", tiny_options).model)
    second = cache.get("tiny-dense", tiny_options)
    gc.collect()
    assert first() is None
    assert cache.loaded_name == "tiny-dense" and not second.capabilities.audio
    assert cache.loads == 2


def test_nothing_loads_until_asked(tiny_options):
    """Building the whole app loads no model; the first request for it does, once."""
    from gemma_demo.config import AppConfig
    from gemma_demo.ui.layout import build_demo

    calls = []
    cache = ModelCache(loaders={"local": lambda name, options: calls.append(name) or object()})
    build_demo(AppConfig(model="tiny", load=tiny_options), cache)
    assert calls == [] and cache.loaded_name is None
    first = cache.get("tiny", tiny_options)
    assert cache.get("tiny", tiny_options) is first
    assert calls == ["tiny"] and cache.loaded_name == "tiny"


def test_missing_model_gives_a_clear_message(tmp_path):
    with pytest.raises(ModelUnavailableError, match="does not hold a loadable Gemma 4"):
        ModelCache().get(str(tmp_path))


def test_unreachable_hub_model_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="--model tiny"):
        ModelCache().get("google/gemma-4-E2B-it", LoadOptions())


def test_corrupt_model_folder_gives_a_clear_message(tmp_path):
    (tmp_path / "config.json").write_text("{ not json")
    with pytest.raises(ModelUnavailableError, match="Could not load"):
        ModelCache().get(str(tmp_path))


def test_names_say_which_models_hear_audio():
    from gemma_demo.engine.registry import capabilities_for_name

    assert capabilities_for_name("tiny").audio and capabilities_for_name("E4B").audio
    assert not capabilities_for_name("tiny-moe").audio and not capabilities_for_name("google/gemma-4-31B-it").audio
