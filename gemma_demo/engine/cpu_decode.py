"""Faster one-token decoding of bf16 models on the CPU.

For a single input row, torch sends a bf16 `nn.Linear` to oneDNN, whose matrix-vector
product is compute-bound here: 10-11 GB/s of weights on one core of the AMD EPYC this
was measured on (torch 2.14.1; side by side on another host, the pinned 2.11.0 behaved
alike: docs/benchmark-history.md, 2026-12-07). ATen's own bf16 matrix-vector kernel, which
torch uses when oneDNN is switched off, reads the same weights at 19-20 GB/s on one core and
31-36 GB/s on two (the machine's copy bandwidth is about 26-33 GB/s). With it the
E2B text decoder decodes 1.4-2.1x faster; outputs differ only by bf16 rounding.

oneDNN stays on for everything else: for several rows (prefill, batched decode) ATen's
kernel is 2-8x slower (a 256-token E2B prefill took 54 s instead of 8.8 s), and
convolutions need it. torch has only a process-wide switch, so a gate lets layers of one
kind run at a time: single-row linears with oneDNN off, the other linears, every
convolution (the audio tower's, a vision patch embedding) and the attention with it on
(on AMX CPUs torch's bf16 attention kernel fails without oneDNN). A prefill in another
thread (two batches at once) therefore never runs its linears or convolutions at the slow
speed; it waits at most for one matrix-vector product.

A compiled piece of a model (`compiled_towers`) cannot take the gate inside its graph: it
holds the oneDNN side around its whole call (`onednn_side`), and the layers inside it run
as plain ones while dynamo traces them.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class _OneDnnGate:
    """Layers of one kind at a time; oneDNN is off exactly while single-row linears run."""

    def __init__(self):
        self._changed = threading.Condition()
        self._single_row = False
        self._inside = 0

    @contextmanager
    def open(self, single_row: bool) -> Iterator[None]:
        with self._changed:
            while self._inside and self._single_row != single_row:
                self._changed.wait()
            if not self._inside and single_row:
                torch._C._set_mkldnn_enabled(False)
            self._single_row = single_row
            self._inside += 1
        try:
            yield
        finally:
            with self._changed:
                self._inside -= 1
                if not self._inside:
                    if self._single_row:
                        torch._C._set_mkldnn_enabled(True)
                    self._changed.notify_all()


_gate = _OneDnnGate()


def onednn_side() -> AbstractContextManager[None]:
    """Held around a call that needs oneDNN throughout (a compiled layer): single-row linears
    in other threads wait until it ends."""
    return _gate.open(single_row=False)


class _SingleRowGemvLinear(nn.Linear):
    """An `nn.Linear` that runs one input row through ATen's matrix-vector kernel."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():  # the compiled caller holds the gate
            return F.linear(input, self.weight, self.bias)
        with _gate.open(single_row=input.numel() == self.in_features):
            return F.linear(input, self.weight, self.bias)


class _GatedConv:
    """Mixed into a convolution's class: it runs on the gate's oneDNN side, never while it is off.

    `_conv_forward` is what `Conv1d`/`Conv2d`/`Conv3d.forward` call, also from subclasses that
    pad first (the audio tower's causal `Conv1d`).
    """

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return super()._conv_forward(input, weight, bias)
        with _gate.open(single_row=False):
            return super()._conv_forward(input, weight, bias)


@functools.cache
def _gated(conv_class: type[nn.Module]) -> type[nn.Module]:
    return type(f"Gated{conv_class.__name__}", (_GatedConv, conv_class), {"__module__": __name__})


def _gate_convolutions(model: nn.Module) -> None:
    for module in model.modules():
        if (isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and not isinstance(module, _GatedConv)
                and module.weight.device.type == "cpu"):
            module.__class__ = _gated(type(module))


class _GatedAttention:
    """An attention function (transformers' `sdpa`) run on the gate's oneDNN side.

    On CPUs with AMX, torch's bf16 flash-attention kernel is built on oneDNN's micro-kernels
    and refuses to run while oneDNN is off ("BFloat16 Brgemm VNNI format is only supported
    ... when oneDNN ukernel is enabled"): a prefill's attention beside another thread's
    decode step would fail, not just slow down.
    """

    def __init__(self, attention):
        self.attention = attention
        functools.update_wrapper(self, attention)

    def __call__(self, *args, **kwargs):
        if torch.compiler.is_compiling():
            return self.attention(*args, **kwargs)
        with _gate.open(single_row=False):
            return self.attention(*args, **kwargs)


def _gate_attention() -> None:
    """Route the `sdpa` attention of every model in this process through the gate, once."""
    from transformers.modeling_utils import AttentionInterface

    attention = AttentionInterface._global_mapping["sdpa"]
    if not isinstance(attention, _GatedAttention):
        AttentionInterface.register("sdpa", _GatedAttention(attention))


def speed_up_cpu_decoding(model: nn.Module) -> int:
    """Switch the bf16 CPU linears of `model` to the single-row fast path; returns how many.

    Its CPU convolutions go behind the same gate, so that they keep oneDNN while another
    thread decodes. Weights are not touched or copied. Does nothing where oneDNN is off or
    unavailable.
    """
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return 0
    switched = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if (type(module) is nn.Linear and type(weight) is nn.Parameter and weight.dtype == torch.bfloat16
                and weight.device.type == "cpu"
                and not hasattr(module, "_hf_hook")):
            module.__class__ = _SingleRowGemvLinear
            switched += 1
    _gate_convolutions(model)
    _gate_attention()
    return switched
