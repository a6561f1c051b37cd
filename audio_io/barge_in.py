"""Barge-in: user speech sustained for `min_speech_ms` while the assistant speaks interrupts it.

On interruption the player is flushed (with its fade) and `BargeIn(turn_id, heard_samples)` is
returned: that event is the cancel signal for the engine. With `recovery` set to "duck" or "pause"
(the app's `backchannels` setting), the first `min_speech_ms` only duck or pause playback (so the
loudspeaker still quiets within the barge-in budget); speech still going `confirm_ms` after that
onset interrupts, and silence for `resume_after_ms` before then restores playback: a cough, a laugh
or a "mm-hm" is over within about half a second, a sentence is not.
Feed it echo-cancelled frames, or the assistant's own voice will interrupt it, with the canceller's
`EchoState`: while what was played can still echo, a voiced frame counts only when its residual
rises `evidence_db` above the echo that may remain (all of it while the canceller has not converged,
what AEC3 has been seen to leave once it has), and before convergence the speech must also last
`unconverged_speech_ms`. So a reply at its start, or after a reopened or stalled stream, does not
interrupt itself, a user louder than the echo still does, and once converged (or with no echo path
at all: the bound is the microphone's floor) barge-in needs only `converged_speech_ms`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from audio_io.echo_state import EchoState
from audio_io.formats import MIC_FRAME_MS
from audio_io.microphone import MicFrame
from audio_io.vad import VadConfig, VoiceActivity
from events import BargeIn

Recovery = Literal["off", "duck", "pause"]
RECOVERIES: tuple[Recovery, ...] = ("pause", "duck", "off")


class Interruptible(Protocol):
    """What `Player` offers the barge-in monitor."""

    def speaking_turn(self) -> int | None: ...
    def flush(self, turn_id: int | None = None) -> int: ...
    def set_gain(self, gain: float) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...


@dataclass(frozen=True, slots=True)
class BargeInConfig:
    enabled: bool = True
    min_speech_ms: int = 70  # 100 gave ~170 ms from onset to silence, 70 gives ~130 (bench.audio)
    max_gap_ms: int = 40  # unvoiced gaps this short do not reset the speech count
    recovery: Recovery = "off"
    duck_gain: float = 0.2
    confirm_ms: int = 700  # "mm-hm" lasts ~0.6 s (espeak-ng: 0.58), "Stop, wait a moment." 1.3 s
    resume_after_ms: int = 300
    evidence_db: float = 6.0  # residual over the echo that may remain, while the far end can echo
    unconverged_speech_ms: int = 150  # the minimum while the canceller has not converged
    converged_speech_ms: int = 30  # and once it has (its residual is the room alone): 150 ms to silence
    # The pitch check, not Silero: Silero's 32 ms chunks and recurrent state take ~140 ms to call an
    # onset speech, and silence at the loudspeaker is due 150 ms after it (bench.audio).
    vad: VadConfig = field(default_factory=lambda: VadConfig(check="pitch"))

    def __post_init__(self) -> None:
        if self.recovery not in ("off", "duck", "pause"):
            raise ValueError(f"recovery must be off, duck or pause, not {self.recovery!r}")
        if self.min_speech_ms <= 0:
            raise ValueError("min_speech_ms must be positive")


class BargeInMonitor:
    """Feed every (echo-cancelled) frame to `process`; it returns `[BargeIn]` when it interrupts."""

    def __init__(self, player: Interruptible, config: BargeInConfig | None = None) -> None:
        self.config = config or BargeInConfig()
        self._player = player
        self._vad = VoiceActivity(self.config.vad)
        self._run_ms = 0
        self._gap_ms = 0
        self._tentative_turn: int | None = None
        self._tentative_elapsed_ms = 0
        self._tentative_silence_ms = 0

    def process(self, frame: MicFrame, echo: EchoState | None = None) -> list[object]:
        """One frame; `echo`: the canceller's state for it (`EchoCanceller.state`), if there is one."""
        speech = self._vad.is_speech(frame.pcm)
        if not self.config.enabled:
            return []
        minimum = self.config.min_speech_ms
        if echo is not None:
            minimum = self.config.converged_speech_ms
            if echo.far_active:
                speech = speech and echo.near_evidence_db >= self.config.evidence_db
                if not echo.converged:
                    minimum = self.config.unconverged_speech_ms
        turn_id = self._player.speaking_turn()
        if turn_id is None:
            if self._tentative_turn is not None:
                self._restore()
            self._run_ms = self._gap_ms = 0
            return []
        if speech:
            self._run_ms += MIC_FRAME_MS
            self._gap_ms = 0
        else:
            self._gap_ms += MIC_FRAME_MS
            if self._gap_ms > self.config.max_gap_ms:
                self._run_ms = 0
        if self._tentative_turn is not None:
            return self._tentative(speech, turn_id)
        if self._run_ms < minimum:
            return []
        if self.config.recovery == "off":
            return [self._interrupt(turn_id)]
        self._tentative_turn = turn_id
        self._tentative_elapsed_ms, self._tentative_silence_ms = self._run_ms, 0
        if self.config.recovery == "duck":
            self._player.set_gain(self.config.duck_gain)
        else:
            self._player.pause()
        return []

    def _tentative(self, speech: bool, turn_id: int) -> list[object]:
        """Ducked or paused: speech still going `confirm_ms` after the onset cuts, silence resumes."""
        self._tentative_elapsed_ms += MIC_FRAME_MS
        if speech:
            self._tentative_silence_ms = 0
        else:
            self._tentative_silence_ms += MIC_FRAME_MS
        if speech and self._tentative_elapsed_ms >= self.config.confirm_ms:
            return [self._interrupt(turn_id)]
        if self._tentative_silence_ms >= self.config.resume_after_ms:
            self._restore()
        return []

    def _interrupt(self, turn_id: int) -> BargeIn:
        heard = self._player.flush(turn_id)
        self._restore()
        self._run_ms = self._gap_ms = 0
        return BargeIn(turn_id=turn_id, heard_samples=heard)

    def _restore(self) -> None:
        if self._tentative_turn is not None:
            self._player.set_gain(1.0)
            self._player.resume()
        self._tentative_turn = None
        self._tentative_elapsed_ms = self._tentative_silence_ms = 0
