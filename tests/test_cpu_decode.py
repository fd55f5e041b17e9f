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
