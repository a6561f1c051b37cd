"""A linear estimate of the echo, for barge-in to listen through: the microphone less what a linear
filter of the far end predicts, with no suppressor after it.

AEC3 removes the echo well, but its suppressor also ducks the first 50 to 70 ms of a voice that
starts over an echo (it cannot tell them apart yet): barge-in, listening to AEC3's output, heard the
user that much late in double talk. `livekit.rtc`'s AEC3 does not expose its own linear stage, and
the Python bindings of Speex's canceller are unmaintained, so this is the textbook partitioned-block
frequency-domain NLMS filter (overlap-save, constrained gradient), used for detection only: what the
user hears and the model gets is still AEC3's output.

It models only `PARTITIONS` frames of the path, placed around the delay `EchoDelay` measured (its
far end is read by heard time from `FarLine`, sample exact): a filter covering every possible path
(~300 ms) converged at ~7 dB a second on speech, this one at 10 to 20 (`STEP` over `PARTITIONS` of
each bin's error is corrected per frame). Adaptation stops while a voice may be in the microphone
(the caller decides), or the filter would learn the user away.
"""

from __future__ import annotations

import math

import numpy as np

from audio_io.formats import MIC_FRAME_SAMPLES, MIC_RATE_HZ

PARTITIONS = 8  # 80 ms of taps around the measured path: each more slows convergence
PRE_S = 0.02  # of them before the path (the measure's error, a fractional delay)
STEP = 0.5  # NLMS step, normalized per frequency bin by the far end's power over the filter
RELATIVE = 1e-2  # and a floor 20 dB under the mean bin: bins the far end barely fills stay still
REGULARIZATION = 1e4  # per-bin power floor (int16², per sample: -50 dBFS): lower, and speech made it diverge
DIVERGED_RATIO = 2.0  # a residual 3 dB above the microphone: the filter adds echo, not removes it
DIVERGED_FRAMES = 5
_BINS = MIC_FRAME_SAMPLES + 1


class LinearEcho:
    """`residual(far, mic)` per microphone frame (int16 scale float arrays of `MIC_FRAME_SAMPLES`),
    then `adapt()` if that frame held echo alone."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """The echo moved (the clocks, the measured path, the device): learn it again."""
        self._far_spectra = np.zeros((PARTITIONS, _BINS), np.complex128)
        self._weights = np.zeros((PARTITIONS, _BINS), np.complex128)
        self._last_far = np.zeros(MIC_FRAME_SAMPLES)
        self._error = np.zeros(_BINS, np.complex128)
        self._diverged = 0

    def residual(self, far: np.ndarray, mic: np.ndarray) -> np.ndarray:
        """The microphone frame less the echo the filter predicts from the far end up to `far`."""
        self._far_spectra = np.roll(self._far_spectra, 1, axis=0)
        self._far_spectra[0] = np.fft.rfft(np.concatenate([self._last_far, far]))
        self._last_far = far
        estimate = np.fft.irfft(np.sum(self._weights * self._far_spectra, axis=0))[MIC_FRAME_SAMPLES:]
        error = mic - estimate
        mic_power, error_power = float(np.mean(mic * mic)), float(np.mean(error * error))
        diverged = mic_power > REGULARIZATION and error_power > DIVERGED_RATIO * mic_power
        self._diverged = self._diverged + 1 if diverged else 0
        if self._diverged >= DIVERGED_FRAMES:  # no voice keeps the residual louder than the microphone
            self.reset()
            return mic.copy()
        self._error = np.fft.rfft(np.concatenate([np.zeros(MIC_FRAME_SAMPLES), error]))
        return error

    def adapt(self) -> None:
        """One NLMS step on the last frame's error (constrained: each partition stays one block long)."""
        power = np.sum(np.abs(self._far_spectra) ** 2, axis=0)
        norm = power + REGULARIZATION * 2 * MIC_FRAME_SAMPLES + RELATIVE * float(np.mean(power))
        gradient = np.conj(self._far_spectra) * (self._error / norm)
        taps = np.fft.irfft(gradient, axis=1)
        taps[:, MIC_FRAME_SAMPLES:] = 0.0
        self._weights += STEP * np.fft.rfft(taps, axis=1)


class FarLine:
    """The far end as fed to the canceller (one frame per 10 ms of heard time), kept contiguous in a
    ring, so a block at any heard time can be read sample exact; a frame off the grid starts it afresh."""

    def __init__(self, seconds: float = 1.0) -> None:
        self._samples = np.zeros(round(seconds * MIC_RATE_HZ))
        self._written = 0  # samples pushed since the line last started
        self._end_s = math.nan  # heard time just after the last sample

    def push(self, time_s: float, pcm: np.ndarray) -> None:
        """A far end frame heard from `time_s`."""
        if not (math.isfinite(self._end_s) and abs(time_s - self._end_s) < 0.5 / MIC_RATE_HZ):
            self._written = 0
        at = np.arange(self._written, self._written + len(pcm)) % len(self._samples)
        self._samples[at] = pcm
        self._written += len(pcm)
        self._end_s = time_s + len(pcm) / MIC_RATE_HZ

    def last(self, n: int) -> np.ndarray | None:
        """The last `n` samples pushed, or None when fewer were since the line started."""
        if n > min(self._written, len(self._samples)):
            return None
        return self._samples[np.arange(self._written - n, self._written) % len(self._samples)]

    def block(self, start_s: float, n: int = MIC_FRAME_SAMPLES) -> np.ndarray | None:
        """`n` samples heard from `start_s`, or None when not all of them were fed."""
        if not math.isfinite(self._end_s):
            return None
        back = round((self._end_s - start_s) * MIC_RATE_HZ)
        if back < n or back > min(self._written, len(self._samples)):
            return None
        first = self._written - back
        return self._samples[np.arange(first, first + n) % len(self._samples)]
