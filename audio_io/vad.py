"""Voice activity of one 10 ms frame: webrtcvad, confirmed by pitch periodicity and a level floor.

webrtcvad alone calls steady white or pink noise speech; voiced speech is periodic (a pitch between
50 and 400 Hz), noise is not, so a frame counts as speech only when both agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audio_io.formats import MIC_FRAME_SAMPLES, MIC_RATE_HZ

_CONTEXT_FRAMES = 3  # periodicity is judged on 30 ms ending at the frame: two periods of a low voice
_MIN_LAG = MIC_RATE_HZ // 400
_MAX_LAG = MIC_RATE_HZ // 50


@dataclass(frozen=True, slots=True)
class VadConfig:
    aggressiveness: int = 2  # webrtcvad mode, 0 (lenient) to 3 (strict)
    periodicity_threshold: float = 0.5  # normalized autocorrelation peak at a pitch lag
    min_level_dbfs: float = -55.0  # quieter frames are silence whatever their shape

    def __post_init__(self) -> None:
        if not 0 <= self.aggressiveness <= 3:
            raise ValueError(f"aggressiveness must be 0..3, not {self.aggressiveness}")
        if not 0.0 < self.periodicity_threshold < 1.0:
            raise ValueError("periodicity_threshold must be in (0, 1)")


class VoiceActivity:
    """Stateful per stream (keeps 30 ms of context): call `is_speech` on consecutive frames."""

    def __init__(self, config: VadConfig | None = None) -> None:
        import webrtcvad

        self.config = config or VadConfig()
        self._vad = webrtcvad.Vad(self.config.aggressiveness)
        self._context = np.zeros(_CONTEXT_FRAMES * MIC_FRAME_SAMPLES, dtype=np.float32)
        self._min_power = (10 ** (self.config.min_level_dbfs / 20) * 32768) ** 2

    def reset(self) -> None:
        self._context[:] = 0

    def is_speech(self, frame: np.ndarray) -> bool:
        """`frame`: 160 int16 samples at 16 kHz."""
        self._context[:-MIC_FRAME_SAMPLES] = self._context[MIC_FRAME_SAMPLES:]
        self._context[-MIC_FRAME_SAMPLES:] = frame
        power = float(np.mean(self._context[-MIC_FRAME_SAMPLES:] ** 2))
        if power < self._min_power:
            return False
        if not self._vad.is_speech(np.ascontiguousarray(frame, dtype=np.int16).tobytes(), MIC_RATE_HZ):
            return False
        return periodicity(self._context) >= self.config.periodicity_threshold


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
