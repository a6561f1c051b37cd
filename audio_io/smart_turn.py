"""Smart Turn v3.2 (pipecat's end-of-turn model, BSD-2): is the turn so far a complete utterance?

It reads the last 8 s of a turn at 16 kHz (zero-padded in front) as Whisper log-mel features: 80
Slaney mel bands of a 400-point STFT every 160 samples, log10, floored 8 below the peak, scaled to
about [-1, 1], after zero-mean unit-variance normalization of the waveform. The features are ours
(numpy, what `transformers.WhisperFeatureExtractor(chunk_length=8)` computes; a test holds them
equal), so the app process needs neither transformers nor torch. One call is ~100 ms on one core
of the machines we build on: it never runs on the audio thread (`turn_judge`).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from audio_io.formats import MIC_RATE_HZ
from audio_io.model_files import SMART_TURN, require

WINDOW_S = 8
N_FFT = 400
HOP = 160
N_MELS = 80


@functools.cache
def mel_filters() -> np.ndarray:
    """(N_FFT // 2 + 1, N_MELS) Slaney-normalized triangles on the Slaney mel scale, 0 to 8 kHz."""

    def to_mel(hz: np.ndarray) -> np.ndarray:
        return np.where(hz < 1000, 3 * hz / 200, 15 + np.log(np.maximum(hz, 1e-9) / 1000) * 27 / np.log(6.4))

    def to_hz(mel: np.ndarray) -> np.ndarray:
        return np.where(mel < 15, 200 * mel / 3, 1000 * np.exp((mel - 15) * np.log(6.4) / 27))

    edges = to_hz(np.linspace(0.0, float(to_mel(np.array(MIC_RATE_HZ / 2))), N_MELS + 2))
    bins = np.linspace(0, MIC_RATE_HZ // 2, N_FFT // 2 + 1)
    slopes = edges[None, :] - bins[:, None]
    down = -slopes[:, :-2] / np.diff(edges)[:-1]
    up = slopes[:, 2:] / np.diff(edges)[1:]
    return np.maximum(0.0, np.minimum(down, up)) * (2.0 / (edges[2:] - edges[:-2]))


def log_mel(audio: np.ndarray, loudest: float | None = None) -> np.ndarray:
    """(N_MELS, 800) features of the last `WINDOW_S` seconds of float `audio` (16 kHz), floored
    under their loudest cell (or under `loudest`, a log10 mel power, to see what a floor does)."""
    n = WINDOW_S * MIC_RATE_HZ
    x = np.asarray(audio, np.float32)[-n:]
    x = np.pad(x, (n - x.size, 0))
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * np.hanning(N_FFT + 1)[:-1], axis=-1)) ** 2
    mel = np.log10(np.maximum(power @ mel_filters(), 1e-10)).T[:, :-1]
    top = mel.max() if loudest is None else loudest
    return ((np.maximum(mel, top - 8.0) + 4.0) / 4.0).astype(np.float32)


class SmartTurn:
    """`completion(audio)`: the probability that int16 or float `audio` (the turn so far, 16 kHz)
    is a finished utterance."""

    def __init__(self, threads: int = 1) -> None:
        from audio_io.silero_vad import cpu_session

        self._session: Any = cpu_session(str(require(SMART_TURN)), threads)

    def completion(self, audio: np.ndarray) -> float:
        x = np.asarray(audio)
        if np.issubdtype(x.dtype, np.integer):
            x = x.astype(np.float32) / 32768.0
        return self.score(log_mel(x))

    def score(self, features: np.ndarray) -> float:
        """The probability for (N_MELS, 800) features as `log_mel` gives them."""
        (probability,) = self._session.run(None, {"input_features": features[None]})
        return float(probability.reshape(-1)[0])
