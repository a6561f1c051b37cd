"""The demo model's words are random: tests make it say a given text (a tool call) by forcing the
Thinker's token choices (bench/tool_turn.py, test- and bench-only; the engine has no hook)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.tool_turn import forcing_choose
from model.device_sampling import DeviceSampler


def force_reply(monkeypatch: pytest.MonkeyPatch, tokenizer: Any, *texts: str) -> list[list[int]]:
    """The next replies choose the tokens of `texts` (special tokens written out), one reply after the
    other: each text ends with `<|im_end|>`, so each is one whole reply. Returns their token ids."""
    monkeypatch.setattr(DeviceSampler, "choose", forcing_choose(tokenizer, texts, DeviceSampler.choose))
    return [list(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
