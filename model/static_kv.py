"""Keys and values of a decoder in preallocated buffers, for decode steps with static shapes.

A transformers `DynamicCache` grows by one position per step (a new tensor every time), so a step
that uses it has a different shape each time and cannot be replayed as a graph. `StaticKV` copies a
prefilled cache into buffers of `capacity` positions; each step writes its key and value at a
position given as a device tensor and attends over the whole buffer under a mask of the positions
written. Its `update` duck-types the one method transformers' attention layers call.
"""

from __future__ import annotations

from typing import Any

import torch

CAPACITY_STEP = 256


def capacity_for(length: int) -> int:
    """Buffer positions for a cache of `length`: the next power of two with room for 256 more steps,
    so that a reply re-records its graph only a few times as it grows."""
    need = length + CAPACITY_STEP
    return 1 << (need - 1).bit_length()


class StaticKV:
    """Per-layer key and value buffers (layers, 1, kv heads, capacity, head dim)."""

    def __init__(self, config: Any, capacity: int, device: torch.device, dtype: torch.dtype) -> None:
        heads = int(config.num_key_value_heads)
        head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
        shape = (int(config.num_hidden_layers), 1, heads, capacity, head_dim)
        self.capacity = capacity
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.write = torch.zeros(1, dtype=torch.long, device=device)

    @classmethod
    def holding(
        cls, cache: Any, config: Any, length: int, device: torch.device, dtype: torch.dtype
    ) -> StaticKV:
        """Buffers for at least `length` positions holding what `cache` (a DynamicCache or a StaticKV) has."""
        kv = cls(config, capacity_for(length), device, dtype)
        if isinstance(cache, StaticKV):
            n = min(cache.capacity, kv.capacity)
            kv.keys[:, :, :, :n].copy_(cache.keys[:, :, :, :n])
            kv.values[:, :, :, :n].copy_(cache.values[:, :, :, :n])
            return kv
        for index, layer in enumerate(cache.layers):
            n = int(layer.keys.shape[-2])
            kv.keys[index, :, :, :n].copy_(layer.keys)
            kv.values[index, :, :, :n].copy_(layer.values)
        return kv

    def mask(self, position: int) -> torch.Tensor:
        """The attention mask (1, 1, 1, capacity) of a step at `position`, built on the host."""
        return (torch.arange(self.capacity) <= position).view(1, 1, 1, -1)

    def update(
        self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> Any:
        self.keys[layer_idx].index_copy_(2, self.write, key)
        self.values[layer_idx].index_copy_(2, self.write, value)
        return self.keys[layer_idx], self.values[layer_idx]
