"""The loaded model's parts and the fixed facts the engine reads from them: token ids, the audio
encoder's window, the Talker's voices. Built once per engine; every engine module takes it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.models.qwen3_omni_moe.processing_qwen3_omni_moe import (
    _get_feat_extract_output_lengths as audio_output_length,
)


@dataclass(frozen=True)
class ModelParts:
    """Thinker, Talker (None without one), processor and the ids the engine needs of them."""

    model: Any  # Qwen3OmniMoeForConditionalGeneration
    processor: Any
    talker: Any
    im_start_id: int
    im_end_id: int
    user_id: int
    media_token_ids: torch.Tensor  # audio, image and video pads
    visual_token_ids: torch.Tensor  # vision start/end and the image and video pads
    closing_ids: list[int]  # "<|im_end|>\n": what closes a reply in the prompt
    audio_window: tuple[int, int]  # mel frames of one audio encoder window, and the tokens it yields
    audio_n_window: int

    @classmethod
    def of(cls, model: Any, processor: Any) -> ModelParts:
        config = model.config
        thinker = config.thinker_config
        talker = model.talker if getattr(model, "has_talker", False) else None
        if talker is not None:
            _check_talker_rope_matches(thinker, config.talker_config)
        audio = thinker.audio_config
        mel, n_window = int(audio.n_window_infer), int(audio.n_window)
        ids = processor.tokenizer("<|im_end|>\n", add_special_tokens=False)["input_ids"]
        return cls(
            model=model,
            processor=processor,
            talker=talker,
            im_start_id=int(config.im_start_token_id),
            im_end_id=int(config.im_end_token_id),
            user_id=int(config.user_token_id),
            media_token_ids=torch.tensor(
                [thinker.audio_token_id, thinker.image_token_id, thinker.video_token_id]
            ),
            visual_token_ids=torch.tensor(
                [
                    thinker.vision_start_token_id,
                    thinker.vision_end_token_id,
                    thinker.image_token_id,
                    thinker.video_token_id,
                ]
            ),
            closing_ids=list(ids),
            audio_window=(mel, audio_tokens(mel, n_window)),
            audio_n_window=n_window,
        )

    @property
    def thinker(self) -> Any:
        return self.model.thinker

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        return self.model.thinker.device

    @property
    def eos_ids(self) -> frozenset[int]:
        """Tokens that end a reply."""
        return frozenset((self.im_end_id,))

    @property
    def samples_per_frame(self) -> int:
        """Output samples per codec frame (1 without a Talker, so frame counts stay counts of samples)."""
        return int(self.model.code2wav.total_upsample) if self.talker is not None else 1

    def audio_tokens(self, mel_frames: int) -> int:
        """Thinker tokens the audio encoder makes of `mel_frames` feature frames."""
        return audio_tokens(mel_frames, self.audio_n_window)

    def speaker_id(self, speaker: str) -> int:
        """The Talker's codec id of a voice, or ValueError naming the voices there are."""
        ids = self.model.config.talker_config.speaker_id
        if speaker.lower() not in ids:
            raise ValueError(f"unknown voice {speaker!r}; this model has {', '.join(sorted(ids))}")
        return int(ids[speaker.lower()])

    def thinker_embed(self, token_ids: list[int]) -> torch.Tensor:
        """The Thinker's input embeddings of `token_ids`, (1, n, d)."""
        ids = torch.tensor([token_ids], device=self.device)
        return self.thinker.get_input_embeddings()(ids)

    def text_embed(self, token: int) -> torch.Tensor:
        """One text token as the Talker reads it: its Thinker embedding through `text_projection`."""
        return self.talker.text_projection(self.thinker_embed([token]))


def audio_tokens(mel_frames: int, n_window: int) -> int:
    return int(audio_output_length(torch.tensor(mel_frames), n_window))


def _check_talker_rope_matches(thinker_config: Any, talker_config: Any) -> None:
    """The Talker's positions are computed with the Thinker's `get_rope_index` (see rope_positions)."""
    keys = ("audio_token_id", "image_token_id", "video_token_id", "vision_start_token_id",
            "audio_start_token_id", "position_id_per_seconds")  # fmt: skip
    for key in keys:
        if getattr(thinker_config, key) != getattr(talker_config, key):
            raise ValueError(
                f"thinker and talker configs disagree on {key}: cannot place the Talker's positions"
            )
    if thinker_config.vision_config.spatial_merge_size != talker_config.spatial_merge_size:
        raise ValueError("thinker and talker configs disagree on spatial_merge_size")
