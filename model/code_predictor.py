"""The code predictor's 15 residual codes of one frame as one region with static shapes and no host
round trip: a preallocated cache of 17 positions, tokens chosen on the device, the loop unrolled.

On a GPU `model.step_graph.StepGraph` captures `FramePredictor.run` as one CUDA graph; on the CPU it
runs eagerly, the same code. The values equal `generate()`'s code predictor: each step attends over
exactly the positions written so far (a static slice of the preallocated keys and values), as
transformers' `DynamicCache` would hold them.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

from model.device_sampling import DeviceSampler
from model.sampling import Sampling
from model.step_graph import StepGraph


class FrameCache:
    """Keys and values of the code predictor's layers for one frame, preallocated; duck-types the
    `update` of a transformers cache. `at(start)` says where the next update writes."""

    def __init__(self, config: Any, positions: int, device: torch.device, dtype: torch.dtype) -> None:
        heads = int(config.num_key_value_heads)
        head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
        shape = (int(config.num_hidden_layers), 1, heads, positions, head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.start = 0

    def at(self, start: int) -> FrameCache:
        self.start = start
        return self

    def update(
        self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> Any:
        end = self.start + key.shape[-2]
        self.keys[layer_idx, :, :, self.start : end].copy_(key)
        self.values[layer_idx, :, :, self.start : end].copy_(value)
        return self.keys[layer_idx, :, :, :end], self.values[layer_idx, :, :, :end]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.start


class FramePredictor:
    """Fills a frame's 15 residual codes from the Talker's last hidden state and its code 0."""

    def __init__(self, talker: Any, sampling: Sampling, generator: torch.Generator | None = None) -> None:
        predictor = talker.code_predictor
        config = predictor.config
        self.talker = talker
        self.predictor = predictor
        self.groups = int(talker.config.num_code_groups)
        device, dtype = talker.device, talker.dtype
        self.cache = FrameCache(config, self.groups + 1, device, dtype)
        self.sampler = DeviceSampler(sampling, int(config.vocab_size), device=device, generator=generator)
        self.positions = torch.arange(self.groups + 1, device=device).view(1, -1)

    def noise(self) -> torch.Tensor:
        """The frame's random draws (one row per residual code), made outside the captured region."""
        return self.sampler.noise(self.groups - 1)

    def run(
        self, last_hidden: torch.Tensor, code0: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`last_hidden` (1, 1, d), `code0` (1, 1): the frame's codes (16,) and the sum of their
        embeddings (1, 1, d), the Talker's next input before the text embedding."""
        embeddings = self.predictor.get_input_embeddings()
        parts = [self.talker.get_input_embeddings()(code0)]
        inputs = torch.cat((last_hidden, parts[0]), dim=1)
        codes = [code0.view(1)]
        start = 0
        for group in range(self.groups - 1):
            n = int(inputs.shape[1])
            hidden = self.predictor.model(
                inputs_embeds=inputs,
                position_ids=self.positions[:, start : start + n],
                past_key_values=self.cache.at(start),
                attention_mask={"full_attention": None},
                use_cache=True,
            ).last_hidden_state
            start += n
            logits = self.predictor.lm_head[group](hidden[:, -1])
            code = self.sampler.choose(logits, noise[group] if self.sampler.needs_noise else None)
            codes.append(code.view(1))
            inputs = embeddings[group](code)
            parts.append(inputs)
        return torch.cat(codes), torch.cat(parts, dim=1).sum(1, keepdim=True)


_captured: weakref.WeakKeyDictionary[Any, dict[tuple[Sampling, int], tuple[FramePredictor, StepGraph]]]
_captured = weakref.WeakKeyDictionary()


def frame_step(
    talker: Any, sampling: Sampling, generator: torch.Generator | None = None
) -> tuple[FramePredictor, StepGraph]:
    """A `FramePredictor` and its region. Where the region is captured (CUDA), one per Talker,
    sampling and generator, so every turn replays the graph recorded once instead of recording its own."""
    predictor = FramePredictor(talker, sampling, generator)
    step = StepGraph("code_predictor", predictor.run, torch.device(talker.device))
    if not step.capture:
        return predictor, step
    shared = _captured.setdefault(talker, {})
    return shared.setdefault((sampling, id(generator)), (predictor, step))
