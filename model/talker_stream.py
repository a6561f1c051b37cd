"""The Talker, one 80 ms codec frame per step, with the code predictor filling each frame.

It is the loop of `Qwen3OmniMoeTalkerForConditionalGeneration.generate()` turned inside out: the
caller hands it one Thinker text embedding per step, as the Thinker produces them, and gets back
each frame's 16 codes as soon as the frame is complete. Its caches live in this object, one per
assistant turn.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from model.code_predictor import frame_step
from model.device_sampling import DeviceSampler
from model.sampling import Sampling
from model.static_kv import StaticDecodeStep, StaticKV, decode_step_for


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
    static_decode: bool | None = None  # steps on preallocated keys and values; None: where graphs capture

    def __post_init__(self) -> None:
        config = self.talker.config
        vocab = int(config.text_config.vocab_size)
        self.eos_id = int(config.codec_eos_token_id)
        # `generate()` forbids the codec special ids (the top 1024 of the vocabulary) except EOS.
        suppress = [i for i in range(vocab - 1024, vocab) if i != self.eos_id]
        device = self.talker.device
        self._sampler = DeviceSampler(self.sampling, vocab, suppress, device=device, generator=self.generator)
        self._seen = self._sampler.seen_mask()
        self._code0: torch.Tensor | None = None  # (1, 1) on the device
        self._predictor, self._predict = frame_step(self.talker, self.code_predictor_sampling, self.generator)
        self.num_code_groups = int(config.num_code_groups)
        if self.static_decode is None:
            self.static_decode = self._predict.capture
        self._static_step: StaticDecodeStep | None = None
        self._length = 0  # positions in the Talker's cache

    def prefill(self, inputs_embeds: torch.Tensor, positions: torch.Tensor, cache: Any = None) -> int:
        """Feed the prompt (user turns and the assistant start) after what `cache` already holds
        (earlier user turns); returns the first frame's code 0."""
        from transformers import DynamicCache

        self.cache = cache if cache is not None else DynamicCache(config=self.talker.config.text_config)
        self._forward(inputs_embeds, positions)
        assert self._code0 is not None
        code0 = int(self._code0)
        self.code0_ids.append(code0)
        self._length = self.cache.get_seq_length()
        self.rope_delta = int(positions[1:].max()) + 1 - self._length
        return code0

    def step(self, text_embed: torch.Tensor) -> tuple[torch.Tensor, int | None]:
        """Complete the pending frame with the code predictor, then feed it plus `text_embed`
        (1, 1, d) to the Talker. Returns the completed frame's codes (16,) and the next frame's
        code 0, or None when the Talker said EOS. The frame's codes and the next code 0 are read
        back together, the step's one host sync."""
        codes, codec_embed = self.complete_frame()
        position = self._length
        positions = torch.tensor([position, *(position + self.rope_delta,) * 3]).view(4, 1, 1)
        if self.static_decode:
            self._forward_static(codec_embed + text_embed, positions, position)
        else:
            self._forward(codec_embed + text_embed, positions.to(self.talker.device))
        self._length += 1
        assert self._code0 is not None
        start = time.perf_counter()
        values = torch.cat((codes, self._code0.view(1))).cpu()
        self.forward_s += time.perf_counter() - start
        code0 = int(values[-1])
        self.code0_ids.append(code0)
        return values[:-1], (None if code0 == self.eos_id else code0)

    def complete_frame(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The code predictor's 15 residual codes for the pending frame, on the device; returns all
        16 codes and the sum of their embeddings (the Talker's next input, before the text embedding)."""
        if self.last_hidden is None or self._code0 is None:
            raise RuntimeError("TalkerStream.prefill must run before step")
        start = time.perf_counter()
        codes, embed = self._predict(self.last_hidden, self._code0, self._predictor.noise())
        self.forward_s += time.perf_counter() - start
        return codes, embed

    def _forward(self, inputs_embeds: torch.Tensor, positions: torch.Tensor) -> None:
        start = time.perf_counter()
        noise = self._sampler.noise(1) if self._sampler.needs_noise else None
        seen = self._seen if self._code0 is not None else None
        self.last_hidden, self._code0 = self.decode(inputs_embeds, positions, noise, seen)
        self._seen.scatter_(1, self._code0, True)
        self.forward_s += time.perf_counter() - start

    def decode(
        self,
        inputs_embeds: torch.Tensor,
        positions: torch.Tensor,
        noise: torch.Tensor | None,
        seen: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One Talker pass; returns its last hidden state (1, 1, d) and the code 0 chosen on the
        device (1, 1), nothing read back."""
        out = self.talker.model(
            inputs_embeds=inputs_embeds, position_ids=positions, past_key_values=self.cache, use_cache=True
        )
        last_hidden = out.last_hidden_state[:, -1:]
        logits = self.talker.codec_head(last_hidden[:, -1])
        return last_hidden, self._sampler.choose(logits, noise, seen)

    def _forward_static(self, inputs_embeds: torch.Tensor, positions: torch.Tensor, position: int) -> None:
        """A decode step on preallocated keys and values, as one captured region: the buffers and
        graph kept with the Talker's cache across turns get its contents at a turn's first step."""
        start = time.perf_counter()
        if self._static_step is None:
            config, sampler, talker = self.talker.config.text_config, self._sampler, self.talker
            self._static_step = decode_step_for(
                self.cache,
                ("talker", self.sampling),
                lambda: StaticDecodeStep(
                    "talker", partial(talker_step, talker, sampler), config, talker.device, talker.dtype
                ),
            )
            self._static_step.begin(self.cache, position)
        noise = self._sampler.noise(1)
        outputs = self._static_step(position, inputs_embeds, positions, noise, self._seen)
        self.last_hidden, self._code0 = outputs
        self._seen.scatter_(1, self._code0, True)
        self.forward_s += time.perf_counter() - start


def talker_step(
    talker: Any,
    sampler: DeviceSampler,
    kv: StaticKV,
    inputs_embeds: torch.Tensor,
    positions: torch.Tensor,
    noise: torch.Tensor,
    seen: torch.Tensor,
    write: torch.Tensor,
    mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Talker pass on static keys and values: its last hidden state and code 0 chosen on the device."""
    out = talker.model(
        inputs_embeds=inputs_embeds,
        position_ids=positions,
        attention_mask=mask,
        past_key_values=kv,
        use_cache=True,
    )
    last_hidden = out.last_hidden_state[:, -1:]
    logits = talker.codec_head(last_hidden[:, -1])
    return last_hidden, sampler.choose(logits, noise if sampler.needs_noise else None, seen)
