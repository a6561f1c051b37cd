"""Token choice for the three decoders (Thinker, Talker, code predictor), on transformers' own
logits processors so that greedy decoding matches `generate()` token for token."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch


@dataclass(frozen=True, slots=True)
class Sampling:
    """How one decoder picks its next token; `do_sample=False` is greedy."""

    do_sample: bool = True
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0

    def greedy(self) -> Sampling:
        return replace(self, do_sample=False)


# The defaults of `Qwen3OmniMoeForConditionalGeneration.generate()` for the Talker and of its
# `prepare_inputs_for_generation` for the code predictor: the checkpoint's generation config can
# override the Thinker's, and `talker_*` keys there override the Talker's.
TALKER_DEFAULT = Sampling(do_sample=True, temperature=0.9, top_k=50, top_p=1.0, repetition_penalty=1.05)
CODE_PREDICTOR_DEFAULT = Sampling(do_sample=True, top_k=50, top_p=0.8)


@dataclass(frozen=True, slots=True)
class SamplingPlan:
    thinker: Sampling
    talker: Sampling
    code_predictor: Sampling

    def greedy(self) -> SamplingPlan:
        return SamplingPlan(self.thinker.greedy(), self.talker.greedy(), self.code_predictor.greedy())

    @classmethod
    def from_generation_config(cls, generation_config: Any) -> SamplingPlan:
        """Defaults from the checkpoint's generation config, as `generate()` would use them."""

        def get(name: str, default: Any) -> Any:
            value = getattr(generation_config, name, None)
            return default if value is None else value

        thinker = Sampling(
            do_sample=bool(get("do_sample", False)),
            temperature=float(get("temperature", 1.0)),
            top_k=int(get("top_k", 0)),
            top_p=float(get("top_p", 1.0)),
            repetition_penalty=float(get("repetition_penalty", 1.0)),
        )
        talker = Sampling(
            do_sample=bool(get("talker_do_sample", TALKER_DEFAULT.do_sample)),
            temperature=float(get("talker_temperature", TALKER_DEFAULT.temperature)),
            top_k=int(get("talker_top_k", TALKER_DEFAULT.top_k)),
            top_p=float(get("talker_top_p", TALKER_DEFAULT.top_p)),
            repetition_penalty=float(get("talker_repetition_penalty", TALKER_DEFAULT.repetition_penalty)),
        )
        code_predictor = replace(CODE_PREDICTOR_DEFAULT, do_sample=talker.do_sample)
        return cls(thinker, talker, code_predictor)


class TokenPicker:
    """Applies one decoder's processors to the last position's logits and picks a token."""

    def __init__(
        self,
        sampling: Sampling,
        suppress_tokens: Sequence[int] = (),
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> None:
        from transformers.generation.logits_process import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            SuppressTokensLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        self.sampling = sampling
        self.generator = generator
        processors = LogitsProcessorList()
        if sampling.repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(penalty=sampling.repetition_penalty))
        if suppress_tokens:
            processors.append(SuppressTokensLogitsProcessor(list(suppress_tokens), device=str(device)))
        if sampling.do_sample:
            if sampling.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(sampling.temperature))
            if sampling.top_k:
                processors.append(TopKLogitsWarper(top_k=sampling.top_k))
            if sampling.top_p < 1.0:
                processors.append(TopPLogitsWarper(top_p=sampling.top_p))
        self.processors = processors
        self._no_ids = torch.empty((1, 0), dtype=torch.long, device=device)

    def __call__(self, logits: torch.Tensor, previous_ids: torch.Tensor | None = None) -> int:
        """`logits`: (1, vocab) for the next position; `previous_ids`: (1, n) tokens this decoder chose."""
        scores = logits.float()
        if self.processors:
            ids = self._no_ids if previous_ids is None else previous_ids
            scores = self.processors(ids, scores)  # type: ignore[arg-type]
        if not self.sampling.do_sample:
            return int(scores.argmax(dim=-1))
        probs = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probs, num_samples=1, generator=self.generator))
