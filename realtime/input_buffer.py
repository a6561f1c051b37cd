"""The turn being spoken, as the client streams it: audio resampled as one stream, camera frames at
their ticks, both bounded; it hands the engine each new piece for the live prefill and becomes a
`UserTurn` on commit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model.media_input import MODEL_AUDIO_RATE_HZ, UserTurn, VideoClip
from realtime.wire import (
    MAX_FRAME_RATE,
    MAX_TURN_AUDIO_S,
    MAX_TURN_FRAMES,
    WIRE_RATE_HZ,
    WireError,
    decode_image,
    decode_pcm16,
    from_wire,
)

UNDECIDED_AUDIO_S = 1.0  # audio held back before deciding that a turn has no camera frames


@dataclass
class Piece:
    """What the engine's `listen` gets next: 16 kHz audio, frames, and the turn's frame rate."""

    audio: np.ndarray
    frames: list[np.ndarray]
    fps: float | None


@dataclass
class InputBuffer:
    """One input audio buffer (one spoken turn) between its first append and its commit or clear.

    The first piece waits until the turn's frame rate is known (a first frame arrived) or until
    `UNDECIDED_AUDIO_S` of audio shows the turn is audio only: no encoder window is complete by
    then, so the wait costs the live prefill nothing."""

    audio: list[np.ndarray] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)
    fps: float | None = None
    samples: int = 0
    fed_audio: int = 0  # pieces of `audio` already handed out
    fed_frames: int = 0
    decided: bool = False
    _resampler: Any = field(default_factory=from_wire)

    @property
    def empty(self) -> bool:
        return self.samples == 0 and not self.frames

    @property
    def duration_s(self) -> float:
        return self.samples / MODEL_AUDIO_RATE_HZ

    def append_audio(self, data: Any) -> None:
        wire = decode_pcm16(data, "input_audio_buffer.append audio")
        added = round(wire.size * MODEL_AUDIO_RATE_HZ / WIRE_RATE_HZ)
        if (self.samples + added) / MODEL_AUDIO_RATE_HZ > MAX_TURN_AUDIO_S:
            raise WireError(
                f"the input audio buffer is over {MAX_TURN_AUDIO_S:.0f} s; commit or clear it",
                code="input_audio_buffer_full",
            )
        piece = self._resampler.push(wire)
        self.audio.append(piece)
        self.samples += int(piece.size)

    def append_frame(self, event: dict[str, Any]) -> None:
        """A camera frame at `timestamp_ms` on this buffer's audio clock: frames come at the steady
        rate `fps`, the first at 0 ms, each at the next tick (an out-of-step frame is refused)."""
        fps = event.get("fps")
        stamp = event.get("timestamp_ms")
        if not isinstance(fps, int | float) or not 0 < fps <= MAX_FRAME_RATE:
            raise WireError(f"fps must be a number in (0, {MAX_FRAME_RATE:g}]", param="fps")
        if not isinstance(stamp, int | float):
            raise WireError("timestamp_ms must be a number", param="timestamp_ms")
        if self.fps is not None and fps != self.fps:
            raise WireError(f"fps changed within one turn ({self.fps:g} → {fps:g})", param="fps")
        if self.fed_audio and self.fps is None:
            raise WireError("this turn was started without camera frames", code="unexpected_frame")
        if len(self.frames) >= MAX_TURN_FRAMES:
            raise WireError(f"over {MAX_TURN_FRAMES} camera frames in one turn", code="too_many_frames")
        expected_ms = len(self.frames) * 1000.0 / fps
        if abs(stamp - expected_ms) > 500.0 / fps:
            raise WireError(
                f"frame at {stamp:g} ms, expected the next tick at {expected_ms:g} ms", param="timestamp_ms"
            )
        frame = decode_image(event.get("image"), "frame image")
        if self.frames and frame.shape != self.frames[0].shape:
            raise WireError(f"frame size {frame.shape[1]}x{frame.shape[0]} changed within the turn")
        self.fps = float(fps)
        self.frames.append(frame)
        self.decided = True

    def next_piece(self) -> Piece | None:
        """What the engine has not heard yet, once the turn's shape (audio only, or with frames) is known."""
        if not self.decided and self.duration_s >= UNDECIDED_AUDIO_S:
            self.decided = True
        if not self.decided or (self.fed_audio == len(self.audio) and self.fed_frames == len(self.frames)):
            return None
        audio = self.audio[self.fed_audio :]
        frames = self.frames[self.fed_frames :]
        self.fed_audio, self.fed_frames = len(self.audio), len(self.frames)
        joined = np.concatenate(audio) if audio else np.zeros(0, np.float32)
        return Piece(joined, frames, self.fps)

    def turn(self) -> UserTurn:
        """The whole turn for `Engine.respond` (the stream flushed: its audio is all the pieces; more
        audio after a speculative reply starts a new stream, as the client's does)."""
        tail = self._resampler.push(np.zeros(0, np.float32), last=True)
        self._resampler = from_wire()
        if tail.size:
            self.audio.append(tail)
            self.samples += int(tail.size)
        audio = np.concatenate(self.audio) if self.audio else None
        video = None
        if self.frames and self.fps is not None:
            video = VideoClip(np.stack(self.frames), self.fps)
        return UserTurn(audio=audio, audio_rate_hz=MODEL_AUDIO_RATE_HZ, video=video)
