"""The Thinker's decode steps of one reply: on the conversation's growing cache (the CPU path, equal
to `generate()`), or where graphs capture on preallocated keys and values as one captured region.

The conversation's `DynamicCache` stays the one record of the context: the static buffers get a copy
of it at the reply's first step, and `finish()` appends the reply's decoded positions back to it, so
prefill, truncation and rebuilding keep working on the cache they know.
"""

from __future__ import annotations

from typing import Any

import torch

from model.static_kv import StaticKV
from model.step_graph import StepGraph


class ThinkerDecoder:
    """Feeds the reply's tokens one at a time after `cache` (whose positions are shifted by `rope_delta`)."""

    def __init__(self, thinker: Any, cache: Any, rope_delta: int, static: bool | None = None) -> None:
        self.thinker = thinker
        self.cache = cache
        self.rope_delta = rope_delta
        self.start = self.length = int(cache.get_seq_length())
        self._graph = StepGraph("thinker", self._step_static, torch.device(thinker.device))
        self.static = self._graph.capture if static is None else static
        self._kv: StaticKV | None = None

    def step(self, token: torch.Tensor) -> torch.Tensor:
        """Feed `token` (1, 1) on the device; returns the next position's logits (1, 1, vocab)."""
        position = self.length
        positions = torch.tensor([position, *(position + self.rope_delta,) * 3]).view(4, 1, 1)
        if self.static:
            logits = self._step_on_static(token, positions, position)
        else:
            out = self.thinker.model(
                input_ids=token.view(1, 1),
                position_ids=positions.to(self.thinker.device),
                past_key_values=self.cache,
                use_cache=True,
            )
            logits = self.thinker.lm_head(out.last_hidden_state[:, -1:])
        self.length += 1
        return logits

    def finish(self) -> None:
        """Append the positions decoded on the static buffers to the conversation's cache."""
        if self._kv is None or self.length == self.start:
            return
        kv, self._kv = self._kv, None
        for layer in range(kv.keys.shape[0]):
            self.cache.update(
                kv.keys[layer, :, :, self.start : self.length].clone(),
                kv.values[layer, :, :, self.start : self.length].clone(),
                layer,
            )
        self.start = self.length

    def _step_on_static(self, token: torch.Tensor, positions: torch.Tensor, position: int) -> torch.Tensor:
        if self._kv is None or position >= self._kv.capacity:
            source = self._kv if self._kv is not None else self.cache
            config = self.thinker.config.text_config
            self._kv = StaticKV.holding(source, config, position + 1, self.thinker.device, self.thinker.dtype)
        write = torch.tensor([position])
        (logits,) = self._graph(token.view(1, 1), positions, write, self._kv.mask(position))
        return logits

    def _step_static(
        self, token: torch.Tensor, positions: torch.Tensor, write: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor]:
        kv = self._kv
        assert kv is not None
        kv.write = write
        out = self.thinker.model(
            input_ids=token, position_ids=positions, attention_mask=mask, past_key_values=kv, use_cache=True
        )
        return (self.thinker.lm_head(out.last_hidden_state[:, -1:]),)
