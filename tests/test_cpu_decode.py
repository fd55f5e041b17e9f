"""The single-row CPU fast path: same answers, oneDNN back on afterwards, and never off for another thread's prefill."""

import threading

import pytest
import torch
from torch import nn

from gemma_demo.engine.cpu_decode import speed_up_cpu_decoding


def _model(dtype=torch.bfloat16):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 64, bias=False)).to(dtype).eval()


@pytest.mark.parametrize("shape", [(1, 64), (1, 1, 64), (64,), (5, 64), (2, 3, 64)])
def test_outputs_match_onednn_within_bf16_rounding(shape):
    reference, fast = _model(), _model()
    assert speed_up_cpu_decoding(fast) == 2
    x = torch.randn(shape).bfloat16()
    with torch.inference_mode():
        expected, got = reference(x), fast(x)
    assert got.shape == expected.shape and got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected.float(), rtol=2e-2, atol=2e-2)
    assert torch.backends.mkldnn.enabled


def test_only_cpu_bf16_linears_are_switched():
    assert speed_up_cpu_decoding(_model(torch.float32)) == 0
    model = _model()
    speed_up_cpu_decoding(model)
    assert isinstance(model[0], nn.Linear) and model[0].weight.data_ptr()  # still a Linear, same weights
    assert speed_up_cpu_decoding(model) == 0  # idempotent


def test_onednn_is_switched_back_on_after_an_error():
    layer = nn.Linear(8, 4).bfloat16()
    speed_up_cpu_decoding(layer)
    with pytest.raises(RuntimeError):
        layer(torch.ones(1, 8, dtype=torch.int64))  # dtype mismatch inside F.linear
    assert torch.backends.mkldnn.enabled


def test_concurrent_threads_leave_onednn_on():
    model = _model()
    speed_up_cpu_decoding(model)
    x = torch.randn(1, 64).bfloat16()

    def decode():
        with torch.inference_mode():
            for _ in range(200):
                model(x)

    threads = [threading.Thread(target=decode) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert torch.backends.mkldnn.enabled


def test_a_prefill_beside_a_decode_keeps_onednn_for_its_own_linears(monkeypatch):
    """While one thread decodes (oneDNN off), another thread's multi-row linears still see it on."""
    import gemma_demo.engine.cpu_decode as cpu_decode

    model = _model()
    speed_up_cpu_decoding(model)
    seen: list[tuple[bool, bool]] = []
    real_linear = cpu_decode.F.linear

    def recording_linear(input, weight, bias=None):
        seen.append((input.numel() == weight.shape[1], torch.backends.mkldnn.enabled))
        return real_linear(input, weight, bias)

    monkeypatch.setattr(cpu_decode.F, "linear", recording_linear)

    def run(x):
        with torch.inference_mode():
            for _ in range(300):
                model(x)

    threads = [threading.Thread(target=run, args=(torch.randn(shape).bfloat16(),)) for shape in ((1, 64), (16, 64))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {single for single, _ in seen} == {True, False}
    assert all(enabled != single for single, enabled in seen)
    assert torch.backends.mkldnn.enabled


CEILING_S = 120.0  # generous: the events below come within milliseconds on an idle machine


class _Outcome:
    """What a function run in a thread returned or raised, so the test thread can check it."""

    def __init__(self, function):
        self.value, self.error = None, None
        self.thread = threading.Thread(target=self._run, args=(function,))

    def _run(self, function):
        try:
            self.value = function()
        except BaseException as error:  # noqa: BLE001 - re-raised in the test thread
            self.error = error

    def result(self):
        self.thread.join(CEILING_S)
        assert not self.thread.is_alive(), "the thread did not finish"
        if self.error is not None:
            raise self.error
        return self.value


@pytest.fixture(scope="module")
def tiny_bf16(tiny_root):
    from gemma_demo.engine.cache import ModelCache
    from gemma_demo.engine.options import LoadOptions

    backend = ModelCache().get("tiny", LoadOptions(tiny_root=tiny_root, device="cpu", dtype="bfloat16"))
    assert backend.model.dtype == torch.bfloat16
    return backend


class _Overlap:
    """Forces the race: a decode step holds oneDNN off while the audio tower reaches a convolution.

    The step's first single-row linear waits until the convolution is held at the gate (or,
    without the gate, has run); each convolution outside the decode thread records oneDNN's state.
    """

    def __init__(self, cpu_decode, decoding: threading.Thread):
        self.real = {name: getattr(cpu_decode.F, name) for name in ("conv1d", "conv2d", "linear")}
        self.decoding = decoding
        self.seen: list[bool] = []
        self.armed = threading.Event()
        self.off_now, self.conv_arrived, self.conv_held = threading.Event(), threading.Event(), threading.Event()

    def recording_conv(self, name: str):
        def conv(*args, **kwargs):
            if threading.current_thread() is not self.decoding:
                self.seen.append(torch._C._get_mkldnn_enabled())
                self.conv_held.set()  # it ran (it should have waited)
            return self.real[name](*args, **kwargs)
        return conv

    def holding_linear(self, input, weight, bias=None):
        if (self.armed.is_set() and threading.current_thread() is self.decoding
                and input.numel() == weight.shape[1] and not self.off_now.is_set()):
            assert not torch._C._get_mkldnn_enabled()
            self.off_now.set()
            assert self.conv_held.wait(CEILING_S), "the convolution neither waited nor ran"
        return self.real["linear"](input, weight, bias)

    def watched_condition(self) -> threading.Condition:
        overlap = self

        class Watched(threading.Condition):
            def wait(self, timeout=None):
                if overlap.conv_arrived.is_set() and threading.current_thread() is not overlap.decoding:
                    overlap.conv_held.set()  # the convolution waits at the gate for the decode step
                return super().wait(timeout)
        return Watched()

    def at_a_convolution(self, module, args):
        if self.armed.is_set() and not self.conv_arrived.is_set():
            assert self.off_now.wait(CEILING_S), "the decode step never switched oneDNN off"
            self.conv_arrived.set()


def test_an_audio_prefill_beside_a_decode_runs_its_convolutions_with_onednn(tiny_bf16, monkeypatch):
    """While a decode step holds oneDNN off, the audio tower's convolutions wait and run with it on.

    Both answers stay those of runs alone.
    """
    import gemma_demo.engine.cpu_decode as cpu_decode
    from gemma_demo.engine.local import build_inputs
    from gemma_demo.engine.settings import GenerationSettings
    from gemma_demo.tasks.messages import audio_messages

    model, processor = tiny_bf16.model, tiny_bf16.processor
    assert speed_up_cpu_decoding(model) == 0, "the loader applied the fast path already"
    text = build_inputs(processor, [{"role": "user", "content": "Count to ten."}], GenerationSettings())
    samples = (0.5 * torch.sin(torch.arange(32_000) * 0.2)).numpy()
    audio = build_inputs(processor, audio_messages(samples, "What do you hear?"), GenerationSettings())

    def decode():
        with torch.inference_mode():
            return model.generate(**text, max_new_tokens=6, do_sample=False)[0].tolist()

    def prefill():
        with torch.inference_mode():
            return model(**audio).logits

    decoding, prefilling = _Outcome(decode), _Outcome(prefill)
    overlap = _Overlap(cpu_decode, decoding.thread)
    for name in ("conv1d", "conv2d"):
        monkeypatch.setattr(cpu_decode.F, name, overlap.recording_conv(name))
    monkeypatch.setattr(cpu_decode.F, "linear", overlap.holding_linear)
    monkeypatch.setattr(cpu_decode._gate, "_changed", overlap.watched_condition())
    hooks = [module.register_forward_pre_hook(overlap.at_a_convolution)
             for module in model.modules() if isinstance(module, (nn.Conv1d, nn.Conv2d))]
    try:
        expected_tokens, expected_logits = decode(), prefill()
        alone = list(overlap.seen)
        overlap.seen.clear()
        overlap.armed.set()
        decoding.thread.start()
        prefilling.thread.start()
        tokens, logits = decoding.result(), prefilling.result()
    finally:
        for hook in hooks:
            hook.remove()
    assert len(alone) >= 2 and all(alone)  # the solo run recorded the tower's convolutions, oneDNN on
    assert overlap.conv_arrived.is_set() and overlap.seen == alone
    assert tokens == expected_tokens
    assert torch.equal(logits, expected_logits)
    assert torch.backends.mkldnn.enabled
