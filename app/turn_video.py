"""Which camera frames go with a user turn: the turn's span plus a short lead-in, at a steady rate
(halved while the scene is still), aligned with the turn's audio for TM-RoPE."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np

from app.camera import CameraFrame
from model.media_input import MODEL_AUDIO_RATE_HZ, UserTurn, VideoClip

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TurnVideoConfig:
    fps: float = 2.0
    lead_in_s: float = 0.5
    still_fps: float = 1.0
    still_difference: float = 2.0  # mean absolute pixel change (0-255) below which the scene is still
    max_frames: int = 64


def scene_change(frames: list[CameraFrame]) -> float:
    """Mean absolute difference between consecutive frames (0 for fewer than two)."""
    if len(frames) < 2:
        return 0.0
    diffs = [
        float(np.mean(np.abs(a.rgb.astype(np.int16) - b.rgb.astype(np.int16))))
        for a, b in itertools.pairwise(frames)
        if a.rgb.shape == b.rgb.shape
    ]
    return float(np.mean(diffs)) if diffs else 0.0


def sample_frames(frames: list[CameraFrame], start_s: float, end_s: float, fps: float) -> list[CameraFrame]:
    """The frame nearest each tick `start_s + k / fps` up to `end_s`: every tick gets a frame (the
    first one repeated if the camera started late), so frame k stays at time k / fps."""
    if not frames:
        return []
    times = np.array([f.time_s for f in frames])
    ticks = np.arange(start_s, end_s + 1e-9, 1.0 / fps)
    return [frames[int(np.argmin(np.abs(times - tick)))] for tick in ticks]


def clip_for_turn(
    frames: list[CameraFrame], audio: np.ndarray, audio_start_s: float, config: TurnVideoConfig
) -> tuple[VideoClip, np.ndarray] | None:
    """The turn's clip and its audio, both starting `lead_in_s` before the speech (the audio padded
    with that much silence), or None when the camera gave too few frames."""
    start_s = audio_start_s - config.lead_in_s
    end_s = audio_start_s + len(audio) / MODEL_AUDIO_RATE_HZ
    span = [f for f in frames if start_s - 0.5 / config.fps <= f.time_s <= end_s]
    fps = config.still_fps if scene_change(span) < config.still_difference else config.fps
    picked = sample_frames(span, start_s, end_s, fps)[: config.max_frames]
    if len(picked) < 2 or len({f.rgb.shape for f in picked}) != 1:
        return None
    lead = np.zeros(round(config.lead_in_s * MODEL_AUDIO_RATE_HZ), dtype=audio.dtype)
    return VideoClip(np.stack([f.rgb for f in picked]), fps), np.concatenate([lead, audio])


@dataclass(frozen=True)
class SpokenTurn:
    """A spoken turn whose clip is picked when the engine worker calls it: the pick reads every
    stored frame of the turn (tens of milliseconds for a long one), too slow for the Qt thread.
    Without a usable clip the turn is audio only, so a camera problem never costs the reply."""

    audio: np.ndarray  # 16 kHz mono int16, as the turn detector gave it
    audio_start_s: float
    frames: list[CameraFrame]
    config: TurnVideoConfig = TurnVideoConfig()

    def __call__(self) -> UserTurn:
        try:
            picked = clip_for_turn(self.frames, self.audio, self.audio_start_s, self.config)
        except Exception:
            log.exception("the turn's camera clip could not be built; the turn goes audio only")
            picked = None
        if picked is None:
            return UserTurn(audio=self.audio, audio_rate_hz=MODEL_AUDIO_RATE_HZ)
        clip, audio = picked
        return UserTurn(audio=audio, audio_rate_hz=MODEL_AUDIO_RATE_HZ, video=clip)
