"""Token choice on the device, without reading anything back: the same processors and the same draw
as `sampling.TokenPicker`, as tensor operations with static shapes, so a decode step can run as one
captured graph and the host reads the chosen token only when it needs it.

`torch.multinomial(probs, 1)` draws q ~ Exp(1) per entry and takes argmax(probs / q), after checking the
probabilities on the host (a sync). Here the Exp(1) draws come from the same generator, made ahead
with one `exponential_` call (outside any captured region), so one token drawn from a fresh generator
state is the same token `TokenPicker` picks from that state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from model.sampling import Sampling


class DeviceSampler:
    """One decoder's token choice as tensor ops: repetition penalty over a mask of the ids seen,
    suppressed ids, temperature, top-k, top-p, then argmax (greedy) or the exponential race."""

    def __init__(
        self,
        sampling: Sampling,
        vocab_size: int,
        suppress_tokens: Sequence[int] = (),
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> None:
        from transformers.generation.logits_process import (
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        self.sampling = sampling
        self.vocab_size = vocab_size
        self.device = torch.device(device)
        self.generator = generator
        self.penalty = sampling.repetition_penalty
        self.suppress: torch.Tensor | None = None
        if suppress_tokens:
            suppress = torch.zeros((1, vocab_size), dtype=torch.bool, device=device)
            suppress[0, list(suppress_tokens)] = True
            self.suppress = suppress
        warpers: list[Any] = []
        if sampling.do_sample:
            if sampling.temperature != 1.0:
                warpers.append(TemperatureLogitsWarper(sampling.temperature))
            if sampling.top_k:
                warpers.append(TopKLogitsWarper(top_k=sampling.top_k))
            if sampling.top_p < 1.0:
                warpers.append(TopPLogitsWarper(top_p=sampling.top_p))
        self.warpers = warpers
        self._no_ids = torch.empty((1, 0), dtype=torch.long, device=device)

    @property
    def needs_noise(self) -> bool:
        return self.sampling.do_sample

    def seen_mask(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """A (1, vocab) mask of the ids the repetition penalty looks at (`ids`: (1, n) or None)."""
        mask = torch.zeros((1, self.vocab_size), dtype=torch.bool, device=self.device)
        if ids is not None and ids.numel():
            mask[0, ids.view(-1).to(self.device)] = True
        return mask

    def noise(self, steps: int = 1) -> torch.Tensor:
        """Exp(1) draws for `steps` choices, (steps, vocab) float32; empty when greedy."""
        if not self.needs_noise:
            return torch.empty((steps, 0), device=self.device)
        draws = torch.empty((steps, self.vocab_size), device=self.device, dtype=torch.float32)
        return draws.exponential_(1, generator=self.generator)

    def scores(self, logits: torch.Tensor, seen: torch.Tensor | None = None) -> torch.Tensor:
        """The processed scores (1, vocab) of `logits` (1, vocab), as `TokenPicker` computes them."""
        scores = logits.float()
        if seen is not None and self.penalty != 1.0:
            penalized = torch.where(scores < 0, scores * self.penalty, scores / self.penalty)
            scores = torch.where(seen, penalized, scores)
        if self.suppress is not None:
            scores = torch.where(self.suppress, -float("inf"), scores)
        for warper in self.warpers:
            scores = warper(self._no_ids, scores)
        return scores

    def choose(
        self, logits: torch.Tensor, noise: torch.Tensor | None = None, seen: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The chosen token (1, 1) long, on the device. When sampling, `noise` (1, vocab) from `noise()`;
        without it the draw is made here (not inside a captured region: the generator must advance)."""
        scores = self.scores(logits, seen)
        if not self.needs_noise:
            return scores.argmax(dim=-1, keepdim=True)
        if noise is None:
            noise = self.noise(1)
        probs = torch.softmax(scores, dim=-1)
        return (probs / noise.view(1, -1)).argmax(dim=-1, keepdim=True)
