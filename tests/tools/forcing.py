"""The demo model's words are random: tests make it say a given text (a tool call) by forcing the
Thinker's token choices, one per step, until the script runs out (test-only; the engine has no hook)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from model.device_sampling import DeviceSampler


def force_reply(monkeypatch: pytest.MonkeyPatch, tokenizer: Any, *texts: str) -> list[list[int]]:
    """The next replies choose the tokens of `texts` (special tokens written out), one reply after the
    other: each text ends with `<|im_end|>`, so each is one whole reply. Returns their token ids."""
    scripts = [list(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
    queue = [token for script in scripts for token in script]
    original = DeviceSampler.choose
    top = max(queue, default=0)

    def choose(self: DeviceSampler, logits: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        chosen = original(self, logits, *args, **kwargs)
        thinker = logits.shape[-1] > top  # the Talker's and code predictor's vocabularies are small
        return torch.full_like(chosen, queue.pop(0)) if queue and thinker else chosen

    monkeypatch.setattr(DeviceSampler, "choose", choose)
    return scripts
