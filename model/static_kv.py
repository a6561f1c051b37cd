"""Keys and values of a decoder in preallocated buffers, for decode steps with static shapes.

A transformers `DynamicCache` grows by one position per step (a new tensor every time), so a step
that uses it has a different shape each time and cannot be replayed as a graph. `StaticKV` copies a
prefilled cache into buffers of `capacity` positions; each step writes its key and value at a
position given as a device tensor and attends over the whole buffer under a mask of the positions
written. Its `update` duck-types the one method transformers' attention layers call.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch

from model.step_graph import StepGraph

HEADROOM = 256
CAPACITY_BLOCK = 1024


def capacity_for(length: int) -> int:
    """Buffer positions for a cache of `length` with room for at least 256 more steps, rounded up to
    blocks of 1024: a graph is recorded again about once per 1024 tokens, and the buffers exceed the
    conversation by at most 1280 positions (they are a copy of its cache, not a replacement)."""
    return -(-(length + HEADROOM) // CAPACITY_BLOCK) * CAPACITY_BLOCK


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
        kv.load(cache)
        return kv

    def load(self, cache: Any) -> None:
        """Copy a DynamicCache's positions into the first positions of these buffers."""
        for index, layer in enumerate(cache.layers):
            n = int(layer.keys.shape[-2])
            self.keys[index, :, :, :n].copy_(layer.keys)
            self.values[index, :, :, :n].copy_(layer.values)

    def mask(self, position: int) -> torch.Tensor:
        """The attention mask (1, 1, 1, capacity) of a step at `position`, built on the host."""
        return (torch.arange(self.capacity) <= position).view(1, 1, 1, -1)

    def update(
        self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> Any:
        self.keys[layer_idx].index_copy_(2, self.write, key)
        self.values[layer_idx].index_copy_(2, self.write, value)
        return self.keys[layer_idx], self.values[layer_idx]


StepFn = Callable[..., tuple[torch.Tensor, ...]]


class StaticDecodeStep:
    """A decoder's step on `StaticKV` as one `StepGraph`, kept for a whole conversation: each reply
    copies the conversation's cache into the same buffers, so a captured graph is recorded again
    only when the buffers must grow. `fn(kv, *inputs, write, mask)` is the step."""

    def __init__(self, name: str, fn: StepFn, config: Any, device: torch.device, dtype: torch.dtype) -> None:
        self.fn = fn
        self.config = config
        self.device = device
        self.dtype = dtype
        self.kv: StaticKV | None = None
        self.graph = StepGraph(name, self._run, device)

    def begin(self, cache: Any, length: int) -> None:
        """At a reply's first step: the buffers hold `cache`'s first `length` positions."""
        if self.kv is None or length >= self.kv.capacity:
            self.kv = StaticKV.holding(cache, self.config, length + 1, self.device, self.dtype)
        else:
            self.kv.load(cache)

    def __call__(self, position: int, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The step at `position` (after `begin`); inputs may come from the host."""
        assert self.kv is not None
        if position >= self.kv.capacity:
            self.kv = StaticKV.holding(self.kv, self.config, position + 1, self.device, self.dtype)
        return self.graph(*inputs, torch.tensor([position]), self.kv.mask(position))

    def _run(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        assert self.kv is not None
        self.kv.write = inputs[-2]
        return self.fn(self.kv, *inputs)


_steps: weakref.WeakKeyDictionary[Any, dict[Any, StaticDecodeStep]] = weakref.WeakKeyDictionary()


def decode_step_for(cache: Any, key: Any, make: Callable[[], StaticDecodeStep]) -> StaticDecodeStep:
    """The `StaticDecodeStep` kept with the conversation's `cache` under `key` (made on first use)."""
    steps = _steps.setdefault(cache, {})
    if key not in steps:
        steps[key] = make()
    return steps[key]
