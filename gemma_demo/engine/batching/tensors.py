"""Merge single-prompt processor outputs into one batch: prompts left-padded, media stacked."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import BatchFeature

# Per-token tensors of the processor's output: left-padded when prompts are batched. Every
# other tensor holds media and is concatenated along its first axis; audio features are
# first right-padded to the longest clip, with the values the processor itself pads with.
SEQUENCE_PADDING = {"input_ids": None, "attention_mask": 0, "mm_token_type_ids": 0, "token_type_ids": 0}
TIME_PADDING = {"input_features": 0.0, "input_features_mask": False}


def media_shapes(inputs: BatchFeature) -> tuple:
    """What must be equal for two prompts' media tensors to be concatenated."""
    return tuple(
        (name, tuple(value.shape[2 if name in TIME_PADDING else 1 :]), str(value.dtype))
        for name, value in sorted(inputs.items())
        if name not in SEQUENCE_PADDING
    )


def merge_inputs(parts: list[BatchFeature], pad_token_id: int) -> BatchFeature:
    """One batch from single-prompt processor outputs: prompts left-padded, media concatenated."""
    merged = {}
    for name in parts[0]:
        tensors = [part[name] for part in parts]
        length = max(t.shape[1] for t in tensors) if tensors[0].dim() > 1 else 0
        if name in SEQUENCE_PADDING:
            value = pad_token_id if name == "input_ids" else SEQUENCE_PADDING[name]
            tensors = [F.pad(t, (length - t.shape[1], 0), value=value) for t in tensors]
        elif name in TIME_PADDING:
            tensors = [_pad_time(t, length, TIME_PADDING[name]) for t in tensors]
        merged[name] = torch.cat(tensors)
    return BatchFeature(merged)


def _pad_time(tensor: torch.Tensor, length: int, value: float | bool) -> torch.Tensor:
    padding = torch.full((tensor.shape[0], length - tensor.shape[1], *tensor.shape[2:]), value, dtype=tensor.dtype)
    return torch.cat([tensor, padding], dim=1)
