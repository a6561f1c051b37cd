"""Which camera frames go with a user turn: the turn's span plus a short lead-in, at a steady rate
(halved when the scene is still as the turn begins), aligned with the turn's audio for TM-RoPE.
The same choices are made while the turn is spoken (`LiveClip`, for the live prefill) and at its
end (`clip_for_turn`), so the frames fed early are the frames of the final clip."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.camera import CameraFrame
from events import SpeechPaused, SpeechProgress
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


RATE_WINDOW_S = 1.0  # the frames before the speech that decide the turn's rate


def turn_rate(frames: list[CameraFrame], audio_start_s: float, config: TurnVideoConfig) -> float:
    """The turn's frame rate, decided by the scene just before it starts (still: `still_fps`)."""
    start_s = audio_start_s - config.lead_in_s
    before = [f for f in frames if start_s - RATE_WINDOW_S <= f.time_s <= audio_start_s]
    return config.still_fps if scene_change(before) < config.still_difference else config.fps


def clip_for_turn(
    frames: list[CameraFrame], audio: np.ndarray, audio_start_s: float, config: TurnVideoConfig
) -> tuple[VideoClip, np.ndarray] | None:
    """The turn's clip and its audio, both starting `lead_in_s` before the speech (the audio padded
    with that much silence), or None when the camera gave too few frames."""
    start_s = audio_start_s - config.lead_in_s
    end_s = audio_start_s + len(audio) / MODEL_AUDIO_RATE_HZ
    fps = turn_rate(frames, audio_start_s, config)
    span = [f for f in frames if start_s - 0.5 / fps <= f.time_s <= end_s]
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


class LiveClip:
    """The turn's audio and frames as they arrive, for `Engine.listen`: the lead-in silence first,
    then each frame once a later one exists (so the nearest frame to its tick is settled)."""

    def __init__(
        self, camera: Any, audio_start_s: float, config: TurnVideoConfig = TurnVideoConfig()
    ) -> None:
        self.camera = camera
        self.config = config
        self.audio_start_s = audio_start_s
        self.start_s = audio_start_s - config.lead_in_s
        before = camera.frames_between(self.start_s - RATE_WINDOW_S, audio_start_s)
        self.fps = turn_rate(before, audio_start_s, config)
        self.samples = 0
        self.ticks_sent = 0
        self.shape: tuple[int, ...] | None = None  # the frames' size; another ends the frames

    def add(self, audio: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """(audio to feed, frames to feed) for the next piece of the turn's audio."""
        if self.samples == 0:
            lead = np.zeros(round(self.config.lead_in_s * MODEL_AUDIO_RATE_HZ), dtype=audio.dtype)
            audio = np.concatenate([lead, audio])
        self.samples += audio.size
        heard_until = self.start_s + self.samples / MODEL_AUDIO_RATE_HZ
        stored = self.camera.frames_between(self.start_s - 0.5 / self.fps, heard_until + 1.0)
        if not stored:
            return audio, []
        frames: list[np.ndarray] = []
        while self.ticks_sent < self.config.max_frames:
            tick = self.start_s + self.ticks_sent / self.fps
            if tick > heard_until or stored[-1].time_s < tick:
                break
            rgb = sample_frames(stored, tick, tick, self.fps)[0].rgb
            if self.shape is not None and rgb.shape != self.shape:
                break  # the source changed mid-turn (camera to screen): one clip takes one size
            self.shape = rgb.shape
            frames.append(rgb)
            self.ticks_sent += 1
        return audio, frames


CAMERA_LOOKBACK_S = 2.0  # frames before the turn's audio: its lead-in, and the scene that sets its rate


def spoken_turn(audio: np.ndarray, audio_start_s: float, camera: Any) -> Any:
    """The engine's turn for spoken `audio`: with the camera running, a `SpokenTurn` that picks its
    clip on the engine link's thread (only the list of stored frames is taken here, under the
    camera's lock)."""
    if camera is None or audio_start_s <= 0:
        return UserTurn(audio=audio, audio_rate_hz=MODEL_AUDIO_RATE_HZ)
    end_s = audio_start_s + audio.size / MODEL_AUDIO_RATE_HZ
    frames = camera.frames_between(audio_start_s - CAMERA_LOOKBACK_S, end_s)
    if not frames:
        return UserTurn(audio=audio, audio_rate_hz=MODEL_AUDIO_RATE_HZ)
    return SpokenTurn(audio, audio_start_s, frames)


class LiveFeed:
    """Audio thread: the turn being spoken, to the engine as it comes, with the camera's frames at
    the clip's ticks when the camera runs (the same frames `SpokenTurn` picks at the end)."""

    def __init__(self) -> None:
        self._clip: LiveClip | None = None

    def took(self, event: object, engine: Any, camera: Any, listening: bool) -> bool:
        """Whether `event` is of the turn in progress (`SpeechProgress`: its audio so far, sent when
        `listening`; `SpeechPaused`: the engine may compute the reply meanwhile)."""
        if isinstance(event, SpeechPaused):
            if listening:
                engine.speculate()
            return True
        if isinstance(event, SpeechProgress):
            if listening:
                self.send(engine, camera, event)
            return True
        return False

    def send(self, engine: Any, camera: Any, progress: Any) -> None:
        if camera is None or progress.audio_start_s <= 0:
            engine.listen(progress.audio)
            return
        if self._clip is None or self._clip.audio_start_s != progress.audio_start_s:
            self._clip = LiveClip(camera, progress.audio_start_s)
        audio, frames = self._clip.add(np.asarray(progress.audio))
        engine.listen(audio, frames, self._clip.fps)
