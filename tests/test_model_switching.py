"""Only the operator picks which models visitors may use, and a switch never breaks running work."""

import threading
import weakref

import gradio as gr
import pytest

from app_helpers import wait_until
from gemma_demo.config import parse_app_args
from gemma_demo.engine.cache import ModelCache
from gemma_demo.errors import InvalidInputError, ModelUnavailableError
from gemma_demo.ui.endpoints import require_allowed
from gemma_demo.ui.settings import build_settings_panel

E2B, E4B = "google/gemma-4-E2B-it", "google/gemma-4-E4B-it"


class FakeBackend:
    def __init__(self, name):
        self.name = name


class Loader:
    """Records each load and whether the model loaded before it was still in memory then."""

    def __init__(self, broken=()):
        self.calls, self.previous_alive, self.broken = [], [], set(broken)
        self._last = None

    def __call__(self, name, options):
        self.calls.append(name)
        self.previous_alive.append(self._last is not None and self._last() is not None)
        if name in self.broken:
            raise ModelUnavailableError(f"Could not load {name}: the disk is on fire.")
        backend = FakeBackend(name)
        self._last = weakref.ref(backend)
        return backend


def holding(cache, name):
    """A thread that generates with `name` until told to stop; what it got lands in `got`."""
    release, got = threading.Event(), []

    def generate():
        try:
            with cache.use(name) as backend:
                got.append(backend.name)
                del backend  # only the cache may keep a model alive
                release.wait(30)
        except Exception as error:  # noqa: BLE001 - the test reads it
            got.append(error)

    thread = threading.Thread(target=generate, daemon=True)
    thread.start()
    return release, got, thread


def test_by_default_visitors_get_only_the_configured_model():
    assert parse_app_args(["--model", "E4B"], env={}).allowed_models == (E4B,)
    everything = parse_app_args(["--model", "tiny", "--models", "all"], env={}).allowed_models
    assert everything[0] == "tiny" and {E2B, E4B, "tiny-moe"} <= set(everything)
    chosen = parse_app_args(["--models", "E4B, tiny"], env={"GEMMA_DEMO_MODEL": "E2B"}).allowed_models
    assert chosen == (E2B, E4B, "tiny")


def test_a_model_outside_the_list_is_refused_naming_the_allowed_ones():
    with pytest.raises(InvalidInputError, match=r"'E4B' is not one of this app's models; it serves google/gemma-4-E2B-it, tiny"):
        require_allowed("E4B", (E2B, "tiny"))
    assert require_allowed("e2b", (E2B, "tiny")) == E2B  # a label names the same checkpoint


def test_the_settings_panel_offers_only_the_allowed_models():
    with gr.Blocks():
        model_box = build_settings_panel((E2B, "tiny"))[0]
    assert [value for _, value in model_box.choices] == [E2B, "tiny"] and model_box.value == E2B
    with gr.Blocks():
        only = build_settings_panel((E2B,))[0]
    assert [value for _, value in only.choices] == [E2B] and only.interactive is False


def test_a_switch_waits_for_running_generations_and_new_requests_queue_behind_it():
    loader = Loader()
    cache = ModelCache(loaders={"local": loader})
    release_a, got_a, thread_a = holding(cache, "a")
    assert wait_until(lambda: got_a == ["a"])
    release_b, got_b, thread_b = holding(cache, "b")
    assert wait_until(lambda: cache.waiting == 1)
    late_a = holding(cache, "a")  # the loaded model, asked for while a switch waits: it queues
    assert wait_until(lambda: cache.waiting == 2)
    assert loader.calls == ["a"] and got_b == [] and late_a[1] == []
    release_a.set()
    assert wait_until(lambda: got_b == ["b"])
    assert loader.calls == ["a", "b"] and loader.previous_alive == [False, False]  # "a" was freed first
    assert late_a[1] == []  # still queued: "b" is generating
    release_b.set()
    assert wait_until(lambda: late_a[1] == ["a"])
    late_a[0].set()
    for thread in (thread_a, thread_b, late_a[2]):
        thread.join(30)


def test_a_failed_switch_loads_the_previous_model_again_and_says_why():
    loader = Loader(broken={"broken"})
    cache = ModelCache(loaders={"local": loader})
    cache.get("a")
    with pytest.raises(ModelUnavailableError, match=r"the disk is on fire\. a is loaded again\."):
        cache.get("broken")
    assert cache.loaded_name == "a" and loader.calls == ["a", "broken", "a"]
    assert cache.get("a").name == "a" and cache.loads == 2
