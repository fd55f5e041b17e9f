"""The media encoders (vision and audio towers): their dtype on a CPU, and one pass per request.

On a CPU the towers, not the language model, decide how long a picture or a clip waits
for its first token: at E2B size a 280-budget picture is 2,520 patches through 16 layers,
about 1.1 TFLOP (0.3 of it attention), and a 30 s audio piece about 0.45 TFLOP, while the
text prefill of the same prompt is about as much again. Two choices keep the towers near
what the machine can compute (P13 and P13b in docs/benchmarks.md):

- dtype: a CPU without native bf16 arithmetic (AVX2 hosts, where oneDNN emulates it) runs
  a bf16 matrix product many times slower than a float32 one, and bf16 towers ran at a
  fifth of the machine's float32 rate or less (13-19%, with oneDNN limited to AVX2).
  There the towers (470M parameters at E2B size) run in float32 while the text decoder
  stays bf16 (decoding reads its weights once per token, and bf16 halves those bytes). Which is faster is measured once per process on a
  tower-shaped product, not guessed from CPU flags: AVX-512 hosts with native bf16 keep
  the towers in bf16, which is faster there.
- one pass per request: each request's media are encoded alone before its batch prefills
  (`encode_media`), and the soft tokens are kept on the request. A batch that restarts to
  take in a newcomer then prefills text again but never re-encodes a picture, and batching
  pictures through a tower saves nothing on a CPU, where the work is compute-bound.

The model reads the kept soft tokens through its own `get_*_features` methods, which
`keep_encoded_media` wraps on the instance: inside a batch whose requests are all encoded
they return the requests' outputs joined in batch order, and otherwise run the tower.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gemma_demo.engine.batching.watch import current_batch

# A tower-shaped matrix product for the dtype probe: patches x width times width x width.
PROBE_ROWS, PROBE_WIDTH = 512, 768
PROBE_REPEATS = 3
TOWER_ATTRIBUTES = ("vision_tower", "audio_tower", "embed_vision", "embed_audio")
# Processor outputs by the encoder that reads them, and the stage a person is shown meanwhile.
MEDIA = {
    "image": (("pixel_values", "image_position_ids"), "Encoding the picture"),
    "video": (("pixel_values_videos", "video_position_ids", "num_frames_per_video"), "Encoding the video frames"),
    "audio": (("input_features", "input_features_mask"), "Encoding the audio"),
}


def _best_time(run: Callable[[], object]) -> float:
    run()
    times = []
    for _ in range(PROBE_REPEATS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


@functools.cache
def cpu_bf16_is_slow() -> bool:
    """Whether a bf16 matrix product is slower than a float32 one on this CPU (measured once)."""
    inputs = torch.randn(PROBE_ROWS, PROBE_WIDTH)
    weight = torch.randn(PROBE_WIDTH, PROBE_WIDTH)
    fp32 = _best_time(lambda: F.linear(inputs, weight))
    bf16 = _best_time(lambda: F.linear(inputs.bfloat16(), weight.bfloat16()))
    return bf16 > fp32


def tower_modules(model: nn.Module) -> list[nn.Module]:
    """The encoders and their projections into the text model, where the model has them."""
    inner = getattr(model, "model", model)
    return [module for name in TOWER_ATTRIBUTES if (module := getattr(inner, name, None)) is not None]


def towers_in_float32_if_faster(model: nn.Module) -> bool:
    """Run a CPU bf16 model's towers in float32 where that is faster here; returns whether it did.

    The towers' outputs are cast to the text model's dtype where they meet it, so only
    rounding inside the towers changes (float32 is the more exact of the two).
    """
    towers = tower_modules(model)
    weights = [p for tower in towers for p in tower.parameters()]
    if not weights or weights[0].device.type != "cpu" or weights[0].dtype != torch.bfloat16:
        return False
    if not cpu_bf16_is_slow():
        return False
    for tower in towers:
        tower.float()
    return True


class _KeptEncoder:
    """Stands in for one `get_<kind>_features` method of a loaded model (see the module docstring)."""

    def __init__(self, kind: str, method: Callable[..., Any]):
        self.kind = kind
        self.method = method
        # `generate` reads the parameter names to pass the pixels before its prefill.
        self.__signature__ = inspect.signature(method)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        batch = current_batch()
        if batch is not None and batch.media_ready:
            return _joined(self.kind, [request.encoded[self.kind] for request in batch.requests])
        return self.encode(*args, **kwargs)

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        batch = current_batch()
        for request in batch.requests if batch is not None else ():
            request.stage = MEDIA[self.kind][1]
        return self.method(*args, **kwargs)


def keep_encoded_media(model: nn.Module) -> None:
    """Make `model` read each batch's media from its requests' kept encoder outputs."""
    inner = getattr(model, "model", model)
    for kind in MEDIA:
        method = getattr(inner, f"get_{kind}_features", None)
        if method is not None and not isinstance(method, _KeptEncoder):
            setattr(inner, f"get_{kind}_features", _KeptEncoder(kind, method))


def encode_media(model: nn.Module, requests: list[Any]) -> None:
    """Run each wanted request's media through its encoder, once, keeping the outputs on the request.

    `model` is one that `keep_encoded_media` prepared (a `LocalBackend`'s).
    """
    inner = getattr(model, "model", model)
    for request in requests:
        for kind, (names, _) in MEDIA.items():
            if kind in request.encoded or names[0] not in request.inputs or not request.wanted():
                continue
            encoder = getattr(inner, f"get_{kind}_features")
            tensors = [request.inputs[name].to(model.device) if name in request.inputs else None for name in names]
            with torch.inference_mode():
                # Joined alone: only what the model reads is kept, not the towers' hidden states.
                request.encoded[kind] = _joined(kind, [encoder.encode(*tensors, return_dict=True)])


def _joined(kind: str, outputs: list[Any]) -> Any:
    """One encoder output for a batch, from its rows' outputs in row order (as the batch's placeholders are)."""
    first = outputs[0]
    if kind != "audio":
        return type(first)(pooler_output=tuple(piece for output in outputs for piece in output.pooler_output))
    length = max(output.pooler_output.shape[1] for output in outputs)
    features, masks = [], []
    for output in outputs:
        tokens = output.pooler_output
        mask = output.attention_mask
        if mask is None:
            mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        missing = length - tokens.shape[1]
        features.append(F.pad(tokens, (0, 0, 0, missing)))
        masks.append(F.pad(mask, (0, missing), value=False))
    return type(first)(pooler_output=torch.cat(features), attention_mask=torch.cat(masks))
