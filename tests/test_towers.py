"""Media are encoded once per request, outside the batch; Stop ends a prefill; the wait is shown."""

import copy
import threading
from pathlib import Path

import pytest
import torch
from app_helpers import wait_until
from test_batching import picture, request, sound
from torch.nn.modules.module import register_module_forward_pre_hook

from gemma_demo.cli.main import main
from gemma_demo.engine import towers
from gemma_demo.engine.base import last_update
from gemma_demo.engine.batching.generate import run_generate
from gemma_demo.engine.batching.requests import END, READING, WAITING, Batch
from gemma_demo.engine.batching.watch import current_batch
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.local import LocalBackend, build_inputs
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.settings import GenerationSettings

GREEDY = GenerationSettings(max_new_tokens=8)
CHELSEA = Path(__file__).resolve().parents[1] / "input" / "chelsea.jpg"
ENCODING = "Encoding the picture…"


def inner(backend):
    return backend.model.model


@pytest.fixture
def held_tower(tiny_backend):
    """The vision tower's first call waits for `release` once it has `started`."""
    started, release = threading.Event(), threading.Event()

    def hold(module, args, kwargs):
        if not started.is_set():
            started.set()
            release.wait(30)

    handle = inner(tiny_backend).vision_tower.register_forward_pre_hook(hold, with_kwargs=True)
    yield started, release
    release.set()
    handle.remove()


def test_a_request_arriving_while_another_encodes_its_picture_shares_its_prefill(tiny_backend, held_tower,
                                                                                 endless, encoded_items):
    prompts = [picture("red"), picture("navy", "What colour is this?")]
    started, release = held_tower
    results: list = [None, None]

    def ask(i):
        results[i] = last_update(tiny_backend.stream(prompts[i], GREEDY))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    threads[0].start()
    assert started.wait(30)
    threads[1].start()
    assert wait_until(lambda: len(tiny_backend.scheduler._waiting) == 1)
    release.set()
    for thread in threads:
        thread.join(60)
    assert endless == [2], "the second request did not join the first one's batch before its prefill"
    assert encoded_items["vision"] == 2
    alone = [last_update(tiny_backend.stream(p, GREEDY)).answer for p in prompts]
    assert [r.answer for r in results] == alone


def test_stop_during_the_towers_ends_the_work_before_the_text_model_runs(tiny_backend, held_tower):
    started, release = held_tower
    layers = inner(tiny_backend).language_model.layers
    ran: list[int] = []
    handle = layers[0].register_forward_pre_hook(lambda module, args: ran.append(1))
    try:
        stream = tiny_backend.stream(picture("red"), GREEDY)
        reader = threading.Thread(target=last_update, args=(stream,))
        reader.start()
        assert started.wait(30)
        batch = tiny_backend.scheduler._batches[0]
        for request in batch.requests:
            request.stop.set()
        release.set()
        assert wait_until(lambda: batch.thread is not None and not batch.thread.is_alive(), 30)
        reader.join(30)
    finally:
        handle.remove()
    assert ran == [], "the text model prefilled a prompt nobody waits for"


def test_a_row_stopped_while_another_row_encodes_leaves_and_the_other_goes_on(tiny_backend, held_tower):
    started, release = held_tower
    rows = [request(tiny_backend, picture(colour)) for colour in ("red", "navy")]
    worker = threading.Thread(target=run_generate, args=(tiny_backend.model, Batch(list(rows)), 0))
    worker.start()
    assert started.wait(30)
    rows[1].stop.set()
    release.set()
    worker.join(60)
    answer = []
    while (item := rows[0].tokens.get(timeout=30)) is not END:
        answer.append(item)
    assert answer and all(isinstance(item, int) for item in answer), answer  # tokens, no error
    assert rows[1].new_tokens == 0 and rows[1].tokens.get(timeout=1) is END


@pytest.mark.parametrize("settings", [GREEDY, GREEDY.with_changes(keep_cache=True, conversation="chat")],
                         ids=["task", "chat-turn"])
def test_stop_during_the_prefill_ends_it_within_a_layer(tiny_backend, settings):
    layers = inner(tiny_backend).language_model.layers
    ran: list[int] = []

    def stop_at_first_layer(module, args):
        ran.append(1)
        for row in current_batch().requests:
            row.stop.set()

    handles = [layers[0].register_forward_pre_hook(stop_at_first_layer)]
    handles += [layer.register_forward_pre_hook(lambda module, args: ran.append(1)) for layer in layers[1:]]
    try:
        final = last_update(tiny_backend.stream(picture("red"), settings))
    finally:
        for handle in handles:
            handle.remove()
    assert len(ran) == 1 and final.stats.new_tokens == 0


def statuses_until(stream, wanted: str) -> list[str]:
    """The statuses `stream` gives up to `wanted`: a busy machine may show an earlier stage first."""
    seen = []
    for update in stream:
        seen.append(update.status)
        if update.status == wanted:
            break
    return seen


def test_the_stream_says_what_it_does_before_the_first_token(tiny_backend, held_tower):
    _, release = held_tower
    reading, go_on = threading.Event(), threading.Event()

    def hold_prefill(module, args):
        if current_batch() is not None and current_batch().first_token_at is None and not reading.is_set():
            reading.set()
            go_on.wait(30)

    handle = inner(tiny_backend).language_model.layers[0].register_forward_pre_hook(hold_prefill)
    try:
        stream = tiny_backend.stream(picture("red"), GREEDY)
        before = statuses_until(stream, ENCODING)
        assert before[-1] == ENCODING and set(before[:-1]) <= {f"{WAITING}…", f"{READING}…"}, before
        release.set()
        assert reading.wait(30)
        assert next(stream).status == f"{READING}…"
        go_on.set()
        rest = list(stream)
    finally:
        go_on.set()
        handle.remove()
    assert rest[-1].done and rest[-1].stats.new_tokens > 0 and not rest[-1].status


def test_the_cli_tells_stderr_what_runs_before_the_first_token(capsys, monkeypatch, tiny_root):
    """The vision tower waits until the stream has told its stage, as a real-size one takes a minute."""
    monkeypatch.setenv("GEMMA_DEMO_TINY_ROOT", str(tiny_root))
    told = threading.Event()
    real_stream = LocalBackend.stream

    def stream(self, messages, settings):
        for update in real_stream(self, messages, settings):
            if update.status == ENCODING:
                told.set()
            yield update

    def hold(module, args):
        if type(module).__name__ == "Gemma4VisionModel":
            told.wait(30)

    monkeypatch.setattr(LocalBackend, "stream", stream)
    handle = register_module_forward_pre_hook(hold)
    try:
        code = main(["caption", str(CHELSEA), "--model", "tiny", "--max-new-tokens", "4"])
    finally:
        handle.remove()
    assert code == 0
    assert f"{CHELSEA}: {ENCODING}" in capsys.readouterr().err.splitlines()


@pytest.fixture(scope="module")
def bf16_backends(tiny_root):
    """The tiny model in bf16 twice: towers in bf16, and towers in float32 as on a CPU without bf16."""
    plain = ModelCache().get("tiny", LoadOptions(tiny_root=tiny_root, dtype="bfloat16"))
    upcast = ModelCache().get("tiny", LoadOptions(tiny_root=tiny_root, dtype="bfloat16"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(towers, "cpu_bf16_is_slow", lambda: True)
        assert towers.towers_in_float32_if_faster(upcast.model)
    return plain, upcast


def test_towers_run_in_float32_where_bf16_is_slow_and_the_text_model_stays_bf16(bf16_backends):
    plain, upcast = bf16_backends
    assert {p.dtype for t in towers.tower_modules(upcast.model) for p in t.parameters()} == {torch.float32}
    assert {p.dtype for p in inner(upcast).language_model.parameters()} == {torch.bfloat16}
    assert {p.dtype for t in towers.tower_modules(plain.model) for p in t.parameters()} == {torch.bfloat16}
    for messages in (picture("red"), sound(1.5)):
        assert last_update(upcast.stream(messages, GREEDY)).stats.new_tokens > 0


def test_float32_towers_give_soft_tokens_at_least_as_exact_as_bf16_ones(bf16_backends, tiny_backend):
    """Against the checkpoint's towers in float64, the upcast towers are never further off than bf16 ones."""
    plain, upcast = bf16_backends
    inputs = build_inputs(plain.processor, picture("red"), GREEDY)
    reference = _soft_tokens(copy.deepcopy(inner(tiny_backend)).double(), inputs)
    errors = {name: (_soft_tokens(inner(backend), inputs) - reference).abs().max().item()
              for name, backend in (("bf16", plain), ("float32", upcast))}
    assert 0 < errors["float32"] < errors["bf16"], errors


def _soft_tokens(model, inputs) -> torch.Tensor:
    with torch.inference_mode():
        output = model.get_image_features.encode(inputs["pixel_values"], inputs["image_position_ids"], return_dict=True)
    return torch.cat(output.pooler_output).double()
