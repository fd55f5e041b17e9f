"""`--compile` (engine/compiled_towers.py): the vision tower's layers compiled at load."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import torch
from PIL import Image
from torch._dynamo.utils import counters

from gemma_demo.config import parse_app_args
from gemma_demo.engine import cpu_decode
from gemma_demo.engine.base import last_update
from gemma_demo.engine.compiled_towers import CACHE_ENV, _CompiledLayer, vision_layers
from gemma_demo.engine.loading import load_local_backend
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.tasks.messages import image_messages

# Pictures of other shapes and budgets than the blank one compiled at load.
PICTURES = (((320, 240), 70), ((200, 380), 140))
# Compiled code may fuse and reorder float arithmetic: the tiny model's float32 tower then differs
# from eager by rounding (1.1e-7 measured here). A layer output off by 1% of its spread gave 3.2e-3.
SOFT_TOKEN_BOUND = 1e-4


@pytest.fixture(scope="module")
def compiled(tiny_options, tmp_path_factory):
    saved = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("inductor"))
    graphs_before = counters["stats"]["unique_graphs"]
    try:
        backend = load_local_backend("tiny", replace(tiny_options, compile=True))
        yield backend, counters["stats"]["unique_graphs"] - graphs_before
    finally:
        if saved is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = saved


def test_the_flag_and_its_variable_reach_the_load_options():
    assert parse_app_args(["--compile"], env={}).load.compile is True
    assert parse_app_args([], env={"GEMMA_DEMO_COMPILE": "1"}).load.compile is True
    assert parse_app_args([], env={}).load.compile is False


def picture(size: tuple[int, int]) -> Image.Image:
    return Image.open("input/chelsea.jpg").convert("RGB").resize(size)


def soft_tokens(backend, image: Image.Image, budget: int) -> torch.Tensor:
    inputs = backend.processor.image_processor(images=[image], max_soft_tokens=budget, return_tensors="pt")
    with torch.inference_mode():
        output = backend.model.model.get_image_features(pixel_values=inputs["pixel_values"],
                                                        image_position_ids=inputs["image_position_ids"])
    return torch.cat(list(output.pooler_output)).float()


def test_the_layers_are_compiled_while_the_model_loads(compiled):
    backend, graphs = compiled
    layers = vision_layers(backend.model)
    assert layers
    assert sum(isinstance(layer.forward, _CompiledLayer) for layer in layers) == len(layers)
    assert graphs >= 1  # the blank picture at load compiled them


def test_compiled_layers_give_the_eager_towers_soft_tokens_at_any_size(compiled, tiny_backend):
    backend, _ = compiled
    graphs = counters["stats"]["unique_graphs"]
    for size, budget in PICTURES:
        expected = soft_tokens(tiny_backend, picture(size), budget)
        got = soft_tokens(backend, picture(size), budget)
        assert got.shape == expected.shape
        assert ((got - expected).norm() / expected.norm()).item() < SOFT_TOKEN_BOUND
    # Compiled for dynamic shapes at load: a new patch count compiles nothing more.
    assert counters["stats"]["unique_graphs"] == graphs


def test_a_compiled_layer_holds_the_onednn_side_of_the_gate(compiled):
    """Inside a graph the layers cannot take the gate: the caller holds it for them."""
    backend, _ = compiled
    layer = vision_layers(backend.model)[0].forward
    seen = []
    inner = layer.compiled

    def watched(*args, **kwargs):
        seen.append((cpu_decode._gate._inside, cpu_decode._gate._single_row))
        return inner(*args, **kwargs)

    layer.compiled = watched
    try:
        soft_tokens(backend, picture((160, 160)), 70)
    finally:
        layer.compiled = inner
    assert seen == [(1, False)]


def test_a_caption_streams_from_the_compiled_model(compiled):
    backend, _ = compiled
    messages = image_messages(picture((240, 180)), "Describe this picture.")
    update = last_update(backend.stream(messages, GenerationSettings(sampling=False, max_new_tokens=4,
                                                                     image_budget=70)))
    assert update.stats.new_tokens == 4


def test_a_failed_compile_leaves_the_tower_as_it_was(tiny_options, tiny_backend, monkeypatch, caplog):
    """Without a working compiler (inductor builds C++) the model still loads, uncompiled, and says so."""
    def broken(forward, **options):
        def run(*args, **kwargs):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    backend = load_local_backend("tiny", replace(tiny_options, compile=True))
    layers = vision_layers(backend.model)
    assert layers
    assert [isinstance(layer.forward, _CompiledLayer) for layer in layers] == [False] * len(layers)
    assert "Could not compile the vision tower (RuntimeError: InvalidCxxCompiler" in caplog.text
    image = picture((160, 160))
    assert torch.equal(soft_tokens(backend, image, 70), soft_tokens(tiny_backend, image, 70))
