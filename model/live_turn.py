"""A user turn prefilled while it is still being spoken.

The audio encoder attends within fixed windows of `n_window_infer` mel frames (8 s), and the vision
encoder within each pair of frames, so a window of audio with its camera frames encodes the same
whether the rest of the turn exists or not. Each window is fed to the Thinker once its features are
final (`turn_features.py`: a window's features never change after that, however loud the rest of
the turn is); at the end of the turn what was fed is compared with the turn as it came: the windows
whose audio and frames match stay in the KV cache, anything after the first mismatch is cropped and
prefilled again with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from model.context import MediaIndex, rope_positions


@dataclass
class LiveWindow:
    """What one window fed: its tokens (the turn's lead-in too, on the first), features and frames."""

    ids: torch.Tensor
    features: torch.Tensor  # (1, mel bins, frames)
    loudest: torch.Tensor  # the loudest log-mel cell of the turn through this window: its floor
    samples: int  # the turn's audio this window's features depend on (its end and margin)
    frames: np.ndarray | None = None  # the camera frames it encoded, fitted to the pixel budget
    grids: int = 0
    pixel_rows: int = 0  # its rows of `pixel_values_videos` (for its `grids` frame pairs)
    talker_ids: torch.Tensor | None = None
    talker_embeds: torch.Tensor | None = None
    positions: torch.Tensor | None = None  # (4, 1, n) where its tokens were fed


@dataclass
class PixelRows:
    """The turn's `pixel_values_videos` rows in one buffer with room to spare: the end of a turn
    copies only its tail's rows, and the whole turn's rows are a view (the turn is not copied)."""

    buffer: torch.Tensor | None = None

    def put(self, at: int, rows: torch.Tensor, spare: int) -> torch.Tensor:
        """Write `rows` from row `at` on (rows after `at` are dropped) and return rows [0, end);
        the buffer grows (to a quarter more) when fewer than `spare` rows would be left after them."""
        end = at + int(rows.shape[0])
        buffer = self.buffer
        if buffer is None or buffer.shape[0] < end + spare or buffer.shape[1:] != rows.shape[1:]:
            grown = rows.new_empty((end + end // 4 + spare, *rows.shape[1:]))
            if buffer is not None:
                grown[:at] = buffer[:at]
            buffer = self.buffer = grown
        buffer[at:end] = rows
        return buffer[:end]


@dataclass
class LiveTurn:
    """The turn being spoken: audio and frames so far, and the windows already in the cache."""

    mark: int  # context length when the turn began: the rollback point
    fps: float | None  # camera frame rate, None for audio alone
    audio: list[np.ndarray] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)
    windows: list[LiveWindow] = field(default_factory=list)
    talker_origin: float | None = (
        None  # Thinker position of the turn's first user token, once the Talker hears it live
    )
    span_start: int = 0  # TM-RoPE position of the turn's first media token
    pixels: PixelRows = field(default_factory=PixelRows)

    @property
    def samples(self) -> int:
        return sum(a.shape[0] for a in self.audio)

    def audio_array(self) -> np.ndarray:
        return np.concatenate(self.audio) if self.audio else np.zeros(0, np.float32)

    def fed_ids(self) -> torch.Tensor:
        return torch.cat([w.ids for w in self.windows]) if self.windows else torch.empty(0, dtype=torch.long)


@dataclass(frozen=True)
class LivePrefix:
    """The verified part of a live turn: its tokens are in the cache, the rest is still to feed."""

    tokens: int
    mel_frames: int
    grids: int
    talker_ids: torch.Tensor | None
    talker_embeds: torch.Tensor | None
    positions: torch.Tensor | None = None  # (4, 1, n) of the turn's whole segment, kept from the windows

    def remaining_media(self, media: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The processor outputs of the whole turn, less what the fed windows encoded."""
        rest = dict(media)
        if "input_features" in media:
            rest["input_features"] = media["input_features"][..., self.mel_frames :]
            rest["feature_attention_mask"] = media["feature_attention_mask"][..., self.mel_frames :]
        if "video_grid_thw" in media and self.grids:
            grid = media["video_grid_thw"].clone()
            rows_per_grid = int(grid[0, 1] * grid[0, 2])
            rest["pixel_values_videos"] = media["pixel_values_videos"][self.grids * rows_per_grid :]
            grid[0, 0] -= self.grids
            rest["video_grid_thw"] = grid
        return rest


def to_model_audio(chunk: Any) -> np.ndarray:
    """A microphone chunk (16 kHz, int16 or float, mono) as float32."""
    array = np.asarray(chunk)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / (float(np.iinfo(array.dtype).max) + 1.0)
    return array.astype(np.float32, copy=False)


def verified_windows(live: LiveTurn, audio: np.ndarray, video: Any | None) -> int:
    """How many fed windows encoded exactly what the whole turn holds: the same audio up to the end
    of each (its features depend on nothing else) and the same camera frames (`video`'s, compared
    as they came, before fitting)."""
    fed = live.audio_array()
    n = min(fed.size, audio.size)
    differs = np.flatnonzero(fed[:n] != audio[:n])
    same = int(differs[0]) if differs.size else n
    frame = 0
    for count, window in enumerate(live.windows):
        if window.samples > same:
            return count
        if window.frames is not None:
            m = window.frames.shape[0]
            fed_frames = live.frames[frame : frame + m]
            if video is None or not _same_frames(video.frames[frame : frame + m], fed_frames):
                return count
            frame += m
    return len(live.windows)


def _same_frames(turn: Any, fed: list[np.ndarray]) -> bool:
    return len(turn) == len(fed) and all(np.array_equal(a, b) for a, b in zip(turn, fed, strict=True))


def prefix_of(live: LiveTurn, windows: int) -> LivePrefix | None:
    """The first `windows` windows as a LivePrefix (None for none)."""
    if windows == 0:
        return None
    kept = live.windows[:windows]
    talker = [w for w in kept if w.talker_ids is not None]
    return LivePrefix(
        tokens=sum(int(w.ids.shape[0]) for w in kept),
        mel_frames=sum(int(w.features.shape[-1]) for w in kept),
        grids=sum(w.grids for w in kept),
        talker_ids=torch.cat([w.talker_ids for w in talker]) if talker else None,  # type: ignore[misc]
        talker_embeds=torch.cat([w.talker_embeds for w in talker]) if talker else None,  # type: ignore[misc]
    )


def tail_positions(
    model: Any, ids: torch.Tensor, tail: MediaIndex, span_start: int, fed: tuple[int, int], cache_start: int
) -> torch.Tensor | None:
    """(4, 1, n) positions of a live turn's tail `ids` (the rest of its media span, then text), from
    `get_rope_index` over the tail's own media alone, shifted to where the whole turn puts them, so
    the end of a turn does not walk the fed windows again. `fed`: the audio tokens and frame pairs
    of the fed windows. None (compute the whole turn's) unless they end where the tail's first
    frame pair starts in time, on whole positions."""
    config = model.config
    audio, visual = ids == config.audio_token_id, ids == config.video_token_id
    fed_audio, fed_grids = fed
    media = int((audio | visual).sum())
    if not int(audio.sum()) or not bool((audio | visual)[:media].all()):
        return None
    if tail.video_grid_thw is not None:
        assert tail.video_second_per_grid is not None
        step = float(tail.video_second_per_grid[0].float() * config.position_id_per_seconds)
        if step != int(step) or fed_grids * int(step) != fed_audio:
            return None
    opening = [config.audio_start_token_id]
    if tail.video_grid_thw is not None:
        opening.insert(0, config.vision_start_token_id)
    alone = rope_positions(model, torch.cat((torch.tensor(opening), ids)), tail)[1:, 0, len(opening) :]
    shift = span_start - len(opening) + fed_audio
    full = alone.clone()
    full[:, audio] += shift
    full[0, visual] += shift
    full[1:, visual] += shift - fed_audio
    if not bool((full[1:, :media] <= full[0, :media]).all()):
        return None  # the span's last position is not its last token's time: walk it whole
    n = int(ids.shape[0])
    full[:, media:] = full[0, :media].max() + 1 + torch.arange(n - media, dtype=full.dtype)
    cache = torch.arange(cache_start, cache_start + n, dtype=full.dtype).view(1, -1)
    return torch.cat((cache, full)).unsqueeze(1)
