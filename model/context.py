"""The Thinker's context across turns: the token ids in its KV cache, the media they stand for,
and what the Talker needs of each user turn.

Each turn adds segments (the user's turn, the reply); positions are computed for the whole
sequence with the model's own `get_rope_index` and only the new part is fed, so the cache equals
what a one-shot prefill of the whole conversation would hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

MEDIA_KEYS = (
    "input_features",
    "feature_attention_mask",
    "pixel_values",
    "image_grid_thw",
    "pixel_values_videos",
    "video_grid_thw",
    "video_second_per_grid",
)


@dataclass
class Segment:
    """A run of token ids in the context, with the processor outputs of the media in it."""

    ids: torch.Tensor  # (n,) long, CPU
    kind: str = "user"  # "system", "user" (closing of the last reply + user turn + assistant start), "reply"
    media: dict[str, torch.Tensor] = field(default_factory=dict)
    # The Talker's view of this segment's user positions (ids and projected embeddings), if any.
    talker_ids: torch.Tensor | None = None
    talker_embeds: torch.Tensor | None = None
    talker_positions: torch.Tensor | None = None  # (3, n) TM-RoPE positions of those, from 0

    @property
    def audio_lengths(self) -> torch.Tensor | None:
        mask = self.media.get("feature_attention_mask")
        return None if mask is None else mask.sum(-1)


def _cat(parts: list[torch.Tensor]) -> torch.Tensor | None:
    return torch.cat(parts) if parts else None


@dataclass(frozen=True)
class MediaIndex:
    """The media of a sequence in order, as `get_rope_index` takes them."""

    audio_lengths: torch.Tensor | None
    image_grid_thw: torch.Tensor | None
    video_grid_thw: torch.Tensor | None
    video_second_per_grid: torch.Tensor | None

    @property
    def audio_in_video(self) -> bool:
        """Every video we build carries the turn's microphone audio inside it (TM-RoPE interleaving)."""
        return self.video_grid_thw is not None

    @classmethod
    def of(cls, segments: list[Segment]) -> MediaIndex:
        audio = [s.audio_lengths for s in segments if s.audio_lengths is not None]
        return cls(
            audio_lengths=_cat(audio),  # type: ignore[arg-type]
            image_grid_thw=_cat([s.media["image_grid_thw"] for s in segments if "image_grid_thw" in s.media]),
            video_grid_thw=_cat([s.media["video_grid_thw"] for s in segments if "video_grid_thw" in s.media]),
            video_second_per_grid=_cat(
                [s.media["video_second_per_grid"] for s in segments if "video_second_per_grid" in s.media]
            ),
        )


def merge_segments(segments: list[Segment]) -> Segment:
    """One segment holding all of `segments`, media batched as the processor batches several
    items of one prompt (audio features padded to the longest, patches concatenated)."""
    media: dict[str, torch.Tensor] = {}
    audio = [s for s in segments if "input_features" in s.media]
    if len(audio) == 1:  # the usual case (a turn after text): no copy of a long turn's media
        media.update(
            input_features=audio[0].media["input_features"],
            feature_attention_mask=audio[0].media["feature_attention_mask"],
        )
    elif audio:
        longest = max(int(s.media["input_features"].shape[-1]) for s in audio)
        media["input_features"] = torch.cat(
            [
                torch.nn.functional.pad(
                    s.media["input_features"], (0, longest - s.media["input_features"].shape[-1])
                )
                for s in audio
            ]
        )
        media["feature_attention_mask"] = torch.cat(
            [
                torch.nn.functional.pad(
                    s.media["feature_attention_mask"],
                    (0, longest - s.media["feature_attention_mask"].shape[-1]),
                )
                for s in audio
            ]
        )
    for key in (
        "pixel_values",
        "image_grid_thw",
        "pixel_values_videos",
        "video_grid_thw",
        "video_second_per_grid",
    ):
        parts = [s.media[key] for s in segments if key in s.media]
        if parts:
            media[key] = parts[0] if len(parts) == 1 else torch.cat(parts)
    return Segment(ids=torch.cat([s.ids for s in segments]), kind="merged", media=media)


def rope_positions(
    model_with_rope: Any,
    ids: torch.Tensor,
    media: MediaIndex,
    *,
    cache_start: int = 0,
    position_start: int = 0,
) -> torch.Tensor:
    """(4, 1, n) positions for `ids` (n,) appended at cache index `cache_start` after content whose
    last TM-RoPE position is `position_start - 1`: the cache index, then the three TM-RoPE axes.

    A conversation's segments each start with text, and `get_rope_index` places text right after the
    largest position before it, so positions computed per segment and shifted equal positions
    computed over the whole conversation; the cost of a turn does not grow with the history.
    `model_with_rope` is the Thinker's model: its `get_rope_index` reads the audio config, which
    the Talker's config lacks (the image + audio bug in DESIGN.md), and both configs agree on the
    token ids and the time scale it uses (checked when the engine starts).
    """
    row = ids.view(1, -1)
    mask = torch.ones_like(row)
    mrope, _ = model_with_rope.get_rope_index(
        row,
        image_grid_thw=media.image_grid_thw,
        video_grid_thw=media.video_grid_thw,
        attention_mask=mask,
        use_audio_in_video=media.audio_in_video,
        audio_seqlens=media.audio_lengths,
        second_per_grids=media.video_second_per_grid,
    )
    text = torch.arange(cache_start, cache_start + row.shape[1], dtype=mrope.dtype).view(1, 1, -1)
    return torch.cat([text, mrope.to(text.device) + position_start], dim=0)


def user_position_mask(ids: torch.Tensor, im_start_id: int, user_id: int) -> torch.Tensor:
    """True where a position belongs to a user turn (from its `<|im_start|>user` up to the next
    `<|im_start|>`), the rule `generate()` uses to pick what the Talker hears of the user."""
    positions = torch.arange(ids.shape[0])
    starts = torch.where(ids == im_start_id, positions, positions.new_full((), -1))
    previous_start = torch.cummax(starts, dim=0).values.clamp_min(0)
    roles = ids[(previous_start + 1).clamp_max(ids.shape[0] - 1)]
    return roles == user_id


@dataclass
class ThinkerContext:
    """Segments in the cache, in order, and the cache itself."""

    segments: list[Segment] = field(default_factory=list)
    cache: Any = None  # transformers DynamicCache

    @property
    def length(self) -> int:
        return sum(int(s.ids.shape[0]) for s in self.segments)

    def all_ids(self, extra: torch.Tensor | None = None) -> torch.Tensor:
        parts = [s.ids for s in self.segments] + ([extra] if extra is not None else [])
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long)

    def media_index(self, extra: Segment | None = None) -> MediaIndex:
        return MediaIndex.of(self.segments + ([extra] if extra is not None else []))

    def crop(self, length: int) -> None:
        """Forget everything after the first `length` tokens (segments and cache)."""
        kept: list[Segment] = []
        total = 0
        for seg in self.segments:
            n = int(seg.ids.shape[0])
            if total + n <= length:
                kept.append(seg)
                total += n
                continue
            keep = length - total
            if keep > 0:
                if seg.media:
                    raise ValueError("cannot cut a segment that holds media; cut at a turn boundary")
                kept.append(Segment(ids=seg.ids[:keep], kind=seg.kind))
                total += keep
            break
        self.segments = kept
        if self.cache is not None:
            cached = self.cache.get_seq_length()
            if cached > total:
                self.cache.crop(-(cached - total))


VISUAL_KEYS = (
    "pixel_values",
    "image_grid_thw",
    "pixel_values_videos",
    "video_grid_thw",
    "video_second_per_grid",
)


def without_frames(segment: Segment, visual_token_ids: torch.Tensor) -> Segment:
    """The segment with its images and camera frames taken out. `visual_token_ids` are vision
    start/end and the image and video pads: an audio-in-video span becomes the plain audio span
    it contains, and an image disappears with its delimiters."""
    keep = ~torch.isin(segment.ids, visual_token_ids)
    media = {k: v for k, v in segment.media.items() if k not in VISUAL_KEYS}
    return Segment(ids=segment.ids[keep], kind=segment.kind, media=media)


def has_frames(segment: Segment) -> bool:
    return any(key in segment.media for key in VISUAL_KEYS)


def talker_user_part(segments: list[Segment], start: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The user turns of `segments` as the Talker hears them: (embeds (n, d), TM-RoPE positions
    (3, n)), the first turn's positions from `start`, each next one past the previous."""
    parts = [s for s in segments if s.talker_embeds is not None and s.talker_positions is not None]
    if not parts:
        return None
    positions = []
    for segment in parts:
        assert segment.talker_positions is not None
        positions.append(segment.talker_positions + start)
        start += int(segment.talker_positions.max()) + 1
    return torch.cat([s.talker_embeds for s in parts]), torch.cat(positions, dim=1)  # type: ignore[misc]
