"""The Talker, one 80 ms codec frame per step, with the code predictor filling each frame.

It is the loop of `Qwen3OmniMoeTalkerForConditionalGeneration.generate()` turned inside out: the
caller hands it one Thinker text embedding per step, as the Thinker produces them, and gets back
each frame's 16 codes as soon as the frame is complete. Its caches live in this object, one per
assistant turn.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from model.sampling import Sampling, TokenPicker


@dataclass
class TalkerStream:
    """Streaming state of the Talker and its code predictor for one assistant turn."""

    talker: Any  # Qwen3OmniMoeTalkerForConditionalGeneration
    sampling: Sampling
    code_predictor_sampling: Sampling
    generator: torch.Generator | None = None
    cache: Any = None
    rope_delta: int = 0
    code0_ids: list[int] = field(default_factory=list)
    last_hidden: torch.Tensor | None = None
    finished: bool = False
    forward_s: float = 0.0  # in the Talker's and the code predictor's forward passes and sampling

    def __post_init__(self) -> None:
        config = self.talker.config
        vocab = config.text_config.vocab_size
        self.eos_id = int(config.codec_eos_token_id)
        # `generate()` forbids the codec special ids (the top 1024 of the vocabulary) except EOS.
        suppress = [i for i in range(vocab - 1024, vocab) if i != self.eos_id]
        device = self.talker.device
        self._pick = TokenPicker(self.sampling, suppress, device=device, generator=self.generator)
        self._pick_residual = TokenPicker(
            self.code_predictor_sampling, device=device, generator=self.generator
        )
        self.num_code_groups = int(config.num_code_groups)

    def prefill(self, inputs_embeds: torch.Tensor, positions: torch.Tensor, cache: Any = None) -> int:
        """Feed the prompt (user turns and the assistant start) after what `cache` already holds
        (earlier user turns); returns the first frame's code 0."""
        from transformers import DynamicCache

        self.cache = cache if cache is not None else DynamicCache(config=self.talker.config.text_config)
        code0 = self._forward(inputs_embeds, positions)
        self.rope_delta = int(positions[1:].max()) + 1 - self.cache.get_seq_length()
        return code0

    def step(self, text_embed: torch.Tensor) -> tuple[torch.Tensor, int | None]:
        """Complete the pending frame with the code predictor, then feed it plus `text_embed`
        (1, 1, d) to the Talker. Returns the completed frame's codes (16,) and the next frame's
        code 0, or None when the Talker said EOS."""
        codes, codec_embed = self.complete_frame()
        position = self.cache.get_seq_length()
        positions = torch.tensor([position, *(position + self.rope_delta,) * 3], device=self.talker.device)
        code0 = self._forward(codec_embed + text_embed, positions.view(4, 1, 1))
        return codes, (None if code0 == self.eos_id else code0)

    def complete_frame(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The code predictor's 15 residual codes for the pending frame; returns all 16 codes and
        the sum of their embeddings (the Talker's next input, before the text embedding)."""
        from transformers import DynamicCache

        if self.last_hidden is None:
            raise RuntimeError("TalkerStream.prefill must run before step")
        start = time.perf_counter()
        predictor = self.talker.code_predictor
        embeddings = predictor.get_input_embeddings()
        code0 = torch.tensor([[self.code0_ids[-1]]], device=self.talker.device)
        parts = [self.talker.get_input_embeddings()(code0)]
        cache = DynamicCache(config=predictor.config)
        inputs = torch.cat((self.last_hidden, parts[0]), dim=1)
        codes = [self.code0_ids[-1]]
        residual_ids = torch.empty((1, 0), dtype=torch.long, device=self.talker.device)
        for group in range(self.num_code_groups - 1):
            hidden = predictor.model(
                inputs_embeds=inputs, past_key_values=cache, use_cache=True
            ).last_hidden_state
            logits = predictor.lm_head[group](hidden[:, -1])
            code = self._pick_residual(logits, residual_ids)
            codes.append(code)
            code_tensor = torch.tensor([[code]], device=self.talker.device)
            residual_ids = torch.cat((residual_ids, code_tensor), dim=1)
            inputs = embeddings[group](code_tensor)
            parts.append(inputs)
        self.forward_s += time.perf_counter() - start
        return torch.tensor(codes), torch.cat(parts, dim=1).sum(1, keepdim=True)

    def _forward(self, inputs_embeds: torch.Tensor, positions: torch.Tensor) -> int:
        start = time.perf_counter()
        out = self.talker.model(
            inputs_embeds=inputs_embeds, position_ids=positions, past_key_values=self.cache, use_cache=True
        )
        self.last_hidden = out.last_hidden_state[:, -1:]
        logits = self.talker.codec_head(self.last_hidden[:, -1])
        previous = torch.tensor([self.code0_ids], dtype=torch.long, device=logits.device)
        code0 = self._pick(logits, previous if self.code0_ids else None)
        self.code0_ids.append(code0)
        self.forward_s += time.perf_counter() - start
        return code0
