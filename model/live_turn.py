"""A user turn prefilled while it is still being spoken.

The audio encoder attends within fixed windows of `n_window_infer` mel frames (8 s), and the vision
encoder within each pair of frames, so a window of audio with its camera frames encodes the same
whether the rest of the turn exists or not. Each window is fed to the Thinker once its features are
final; at the end of the turn the one-shot prompt is built as usual and compared with what was fed:
the windows that match stay in the KV cache, anything after the first mismatch (a louder sound later
moves the feature extractor's floor, say) is cropped and prefilled again with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

WINDOW_MARGIN_SAMPLES = 1600  # 0.1 s past a window: the STFT frames at its end are final


@dataclass
class LiveWindow:
    """What one window fed: its tokens (the turn's lead-in too, on the first), features and pixels."""

    ids: torch.Tensor
    features: torch.Tensor  # (1, mel bins, frames)
    pixels: torch.Tensor | None  # rows of `pixel_values_videos` for its `grids` frame pairs
    frames: np.ndarray | None = None  # the camera frames it encoded, fitted to the pixel budget
    grids: int = 0
    talker_ids: torch.Tensor | None = None
    talker_embeds: torch.Tensor | None = None


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


def verified_windows(live: LiveTurn, features: torch.Tensor, video: Any | None) -> int:
    """How many fed windows encoded exactly what the whole turn holds: the same mel features (the
    extractor's floor follows the loudest sound, so a later, louder one changes earlier features)
    and the same camera frames (`video`'s, compared as they came, before fitting)."""
    mel = frame = 0
    for count, window in enumerate(live.windows):
        n = int(window.features.shape[-1])
        if not torch.equal(features[..., mel : mel + n], window.features):
            return count
        if window.frames is not None:
            m = window.frames.shape[0]
            fed = live.frames[frame : frame + m]
            if video is None or not _same_frames(video.frames[frame : frame + m], fed):
                return count
            frame += m
        mel += n
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
