"""A spoken turn with the shared screen's frames, made the way the app makes it (for
`bench.engine`'s `first_audio_ms_screen`): a desktop picture, read at the screen's rate and kept
downscaled as the capture thread keeps it, then picked for the turn by `app.turn_video` (a still
screen at its lower rate)."""

from __future__ import annotations

import numpy as np

from app.camera import CameraConfig, CameraFrame, downscale
from app.screen_capture import SCREEN_FPS
from app.turn_video import CAMERA_LOOKBACK_S, SpokenTurn
from model.media_input import MODEL_AUDIO_RATE_HZ, UserTurn


def desktop(width: int = 1920, height: int = 1080) -> np.ndarray:
    """A desktop-like picture: two windows with title bars and lines of text on a plain background."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    rgb = np.full((height, width, 3), (40, 70, 110), np.uint8)
    for index, (x, y, w, h) in enumerate(((80, 60, 1100, 760), (900, 300, 900, 700))):
        rgb[y : y + h, x : x + w] = 245
        rgb[y : y + 36, x : x + w] = (60, 60, 70)
        cv2.putText(rgb, f"Window {index + 1}", (x + 12, y + 26), font, 0.8, (255,) * 3, 2)
        for line in range(1, (h - 50) // 28):
            words = f"line {line}: the quick brown fox jumps over the lazy dog {line * 7 % 13}"
            cv2.putText(rgb, words, (x + 16, y + 40 + line * 28), font, 0.6, (20,) * 3, 1)
    return rgb


def screen_turn(audio: np.ndarray) -> UserTurn:
    """`audio` (16 kHz, spoken from time 0) with the frames of a still shared desktop."""
    kept = downscale(desktop(), CameraConfig().store_max_pixels)
    end_s = audio.size / MODEL_AUDIO_RATE_HZ
    times = np.arange(-CAMERA_LOOKBACK_S, end_s, 1.0 / SCREEN_FPS)
    frames = [CameraFrame(kept, float(t), i) for i, t in enumerate(times)]
    return SpokenTurn(audio, 0.0, frames)()
