"""Voice activity of one 10 ms frame: webrtcvad as the fast gate, then a trained or hand-written check.

webrtcvad alone calls steady noise speech. The check behind it is Silero VAD (a trained detector:
it keeps unvoiced sounds and holds up in pink noise at 10 dB, where the pitch check lost the first
words), plus a near-field test: a frame counts only when it stands `background_margin_db` above the
room's background (a low percentile of recent frame levels), so background talk, which Silero rightly
calls speech, forms no turn. Without the Silero file the old check runs: periodicity (a pitch between
50 and 400 Hz) and a level floor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from audio_io.formats import MIC_FRAME_MS, MIC_FRAME_SAMPLES, MIC_RATE_HZ

log = logging.getLogger(__name__)

_CONTEXT_FRAMES = 3  # periodicity is judged on 30 ms ending at the frame: two periods of a low voice
_MIN_LAG = MIC_RATE_HZ // 400
_MAX_LAG = MIC_RATE_HZ // 50

Check = Literal["silero", "pitch"]


@dataclass(frozen=True, slots=True)
class VadConfig:
    aggressiveness: int = 2  # webrtcvad mode, 0 (lenient) to 3 (strict)
    check: Check = "silero"  # "pitch" is the hand-written check (also the fallback without the model)
    speech_probability: float = 0.5  # Silero's threshold
    background_margin_db: float = 9.0  # a frame this far above the background may be the user's
    # a turn's loud speech frames (80th percentile) this far above its quiet frames and the background:
    # the user at 10 dB SNR measured 12.3 to 18.4 dB, background talk switching on 5.2 to 8.7 dB
    turn_margin_db: float = 10.5
    background_percentile: float = 20.0
    background_window_ms: int = 4000
    background_warmup_ms: int = 500  # no speech before the background has been heard this long
    periodicity_threshold: float = 0.5  # pitch check: normalized autocorrelation peak at a pitch lag
    min_level_dbfs: float = -55.0  # quieter frames are silence whatever their shape

    def __post_init__(self) -> None:
        if not 0 <= self.aggressiveness <= 3:
            raise ValueError(f"aggressiveness must be 0..3, not {self.aggressiveness}")
        if self.check not in ("silero", "pitch"):
            raise ValueError(f"check must be silero or pitch, not {self.check!r}")
        if not 0.0 < self.periodicity_threshold < 1.0 or not 0.0 < self.speech_probability < 1.0:
            raise ValueError("periodicity_threshold and speech_probability must be in (0, 1)")


class VoiceActivity:
    """Stateful per stream (context, model state, background level): call `is_speech` on consecutive
    frames."""

    def __init__(self, config: VadConfig | None = None) -> None:
        import webrtcvad

        self.config = config or VadConfig()
        self._vad = webrtcvad.Vad(self.config.aggressiveness)
        self._context = np.zeros(_CONTEXT_FRAMES * MIC_FRAME_SAMPLES, dtype=np.float32)
        self._min_power = (10 ** (self.config.min_level_dbfs / 20) * 32768) ** 2
        self._levels_db = np.full(max(1, self.config.background_window_ms // MIC_FRAME_MS), np.nan)
        self._at = 0
        self._heard = 0  # frames of background history
        self.level_db = 0.0  # the last frame's
        self._silero = None
        if self.config.check == "silero":
            from audio_io.model_files import ModelMissingError

            try:
                from audio_io.silero_vad import SileroVad

                self._silero = SileroVad()
            except (ModelMissingError, ImportError) as error:
                log.warning("Silero VAD unavailable (%s); using the pitch check", error)

    @property
    def check(self) -> Check:
        """The check in use ("pitch" when Silero was asked for but its file is missing)."""
        return "silero" if self._silero is not None else "pitch"

    def reset(self) -> None:
        self._context[:] = 0
        self._levels_db[:] = np.nan
        self._heard = 0
        if self._silero is not None:
            self._silero.reset()

    def is_speech(self, frame: np.ndarray) -> bool:
        """`frame`: 160 int16 samples at 16 kHz."""
        self._context[:-MIC_FRAME_SAMPLES] = self._context[MIC_FRAME_SAMPLES:]
        self._context[-MIC_FRAME_SAMPLES:] = frame
        power = float(np.mean(self._context[-MIC_FRAME_SAMPLES:] ** 2))
        probability = self._silero.probability(frame) if self._silero is not None else 0.0
        frame_db = self.level_db = power_db(power)
        self._levels_db[self._at] = frame_db
        self._at = (self._at + 1) % len(self._levels_db)
        self._heard += 1
        if power < self._min_power:
            return False
        if not self._vad.is_speech(np.ascontiguousarray(frame, dtype=np.int16).tobytes(), MIC_RATE_HZ):
            return False
        if self._silero is None:
            return periodicity(self._context) >= self.config.periodicity_threshold
        if probability < self.config.speech_probability:
            return False
        if self._heard * MIC_FRAME_MS < self.config.background_warmup_ms:
            return False
        return frame_db >= self.background_db() + self.config.background_margin_db

    def background_db(self) -> float:
        """The room's level now: a low percentile of the recent frames' levels (dB over 1 LSB²)."""
        return float(np.nanpercentile(self._levels_db, self.config.background_percentile))

    def stands_out(self, levels_db: list[tuple[bool, float]]) -> bool:
        """Whether a turn's speech frames stand `turn_margin_db` above the turn's own quiet
        frames (its pauses and the silence that ended it) and above the background as it is now. A
        new background (a television switched on) passes for speech until the running estimate has
        caught up with it, ~1 s; judged on the whole turn at its end, that turn is told apart."""
        if self._silero is None:
            return True
        speech = [level for voiced, level in levels_db if voiced]
        if not speech:
            return False
        quiet = float(np.percentile([level for _, level in levels_db], self.config.background_percentile))
        floor = max(quiet, self.background_db())
        return float(np.percentile(speech, 80)) >= floor + self.config.turn_margin_db


def power_db(power: float) -> float:
    """dB over 1 LSB², which keeps digital silence finite."""
    return float(10 * np.log10(power + 1.0))


def level_db(frame: np.ndarray) -> float:
    """A frame's level (int16 samples) as `VoiceActivity` measures it."""
    return power_db(float(np.mean(frame.astype(np.float32) ** 2)))


def periodicity(window: np.ndarray) -> float:
    """Highest normalized autocorrelation over pitch lags of the first difference (which whitens hum)."""
    w = np.diff(window.astype(np.float64))
    n = len(w)
    spectrum = np.fft.rfft(w, 2 * n)
    autocorr = np.fft.irfft(spectrum.real**2 + spectrum.imag**2)[:n]
    lags = np.arange(_MIN_LAG, min(_MAX_LAG, n - 1) + 1)
    squares = w * w
    tail_energy = np.cumsum(squares[::-1])[::-1]  # energy of w[k:]
    head_energy = np.cumsum(squares)  # energy of w[: k + 1]
    norm = np.sqrt(tail_energy[lags] * head_energy[n - 1 - lags]) + 1e-9
    return float(np.max(autocorr[lags] / norm))
