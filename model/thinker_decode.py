"""The Thinker's decode steps of one reply: on the conversation's growing cache (the CPU path, equal
to `generate()`), or where graphs capture on preallocated keys and values as one captured region.

The conversation's `DynamicCache` stays the one record of the context: the static buffers get a copy
of it at the reply's first step, and `finish()` appends the reply's decoded positions back to it, so
prefill, truncation and rebuilding keep working on the cache they know.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from model.static_kv import StaticDecodeStep, StaticKV, decode_step_for
from model.step_graph import cuda_graphs_enabled


def thinker_step(
    thinker: Any,
    kv: StaticKV,
    token: torch.Tensor,
    positions: torch.Tensor,
    write: torch.Tensor,
    mask: torch.Tensor,
) -> tuple[torch.Tensor]:
    """One Thinker pass on static keys and values: the next position's logits (1, 1, vocab)."""
    out = thinker.model(
        input_ids=token, position_ids=positions, attention_mask=mask, past_key_values=kv, use_cache=True
    )
    return (thinker.lm_head(out.last_hidden_state[:, -1:]),)


class ThinkerDecoder:
    """Feeds the reply's tokens one at a time after `cache` (whose positions are shifted by `rope_delta`)."""

    def __init__(self, thinker: Any, cache: Any, rope_delta: int, static: bool | None = None) -> None:
        self.thinker = thinker
        self.cache = cache
        self.rope_delta = rope_delta
        self.start = self.length = int(cache.get_seq_length())
        device = torch.device(thinker.device)
        self.static = (device.type == "cuda" and cuda_graphs_enabled()) if static is None else static
        self._step: StaticDecodeStep | None = None
        if self.static:
            config = thinker.config.text_config
            self._step = decode_step_for(
                cache,
                "thinker",
                lambda: StaticDecodeStep(
                    "thinker", partial(thinker_step, thinker), config, device, thinker.dtype
                ),
            )
        self._begun = False

    def step(self, token: torch.Tensor) -> torch.Tensor:
        """Feed `token` (1, 1) on the device; returns the next position's logits (1, 1, vocab)."""
        position = self.length
        positions = torch.tensor([position, *(position + self.rope_delta,) * 3]).view(4, 1, 1)
        if self._step is not None:
            if not self._begun:
                self._step.begin(self.cache, position)
                self._begun = True
            (logits,) = self._step(position, token.view(1, 1), positions)
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
        if self._step is None or self._step.kv is None or self.length == self.start or not self._begun:
            return
        kv = self._step.kv
        for layer in range(kv.keys.shape[0]):
            self.cache.update(
                kv.keys[layer, :, :, self.start : self.length].clone(),
                kv.values[layer, :, :, self.start : self.length].clone(),
                layer,
            )
        self.start = self.length
