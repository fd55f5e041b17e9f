"""One batch cache from single-prompt key/value caches, so prompts prefilled apart decode together.

Each row is right-aligned, as `merge_inputs` left-pads the prompts: the padding goes at
the start of every layer, where the batch's attention mask is 0. A full-attention layer
pads to the longest prompt; a sliding-window layer holds at most its window's last
tokens, so it pads to the longest of those and counts the longest prompt as seen, and
the mask's window lines up with every row's own last tokens. Layers that hold nothing
(KV-shared layers read an earlier layer's states) stay empty.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicSlidingWindowLayer


def merge_caches(caches: list[DynamicCache], config) -> DynamicCache:
    """The rows' caches as one, each row left-padded to the longest."""
    merged = DynamicCache(config=config)
    seen = max(cache.get_seq_length() for cache in caches)
    for index, layer in enumerate(merged.layers):
        rows = [cache.layers[index] for cache in caches]
        if getattr(rows[0], "keys", None) is None or not rows[0].is_initialized:
            continue
        width = max(row.keys.shape[-2] for row in rows)
        keys = torch.cat([_left_padded(row.keys, width) for row in rows])
        values = torch.cat([_left_padded(row.values, width) for row in rows])
        layer.lazy_initialization(keys, values)
        layer.keys, layer.values = keys, values
        if isinstance(layer, DynamicSlidingWindowLayer):
            layer.cumulative_length = seen
    return merged


def _left_padded(states: torch.Tensor, width: int) -> torch.Tensor:
    """`states` ([1, heads, tokens, dim]) with zeros before its tokens, up to `width` of them."""
    return F.pad(states, (0, 0, width - states.shape[-2], 0))
