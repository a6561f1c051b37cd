"""Where the echo really is: the delay from the far end (stamped with when it is heard) to its echo in
the microphone, measured from the signals themselves (GCC-PHAT over the last `WINDOW_S`).

AEC3 finds delays by itself, but not reliably beyond a few hundred ms (a Bluetooth speaker's path plus
the lead), and every time the streams' clocks are off (an underrun the host filled or dropped, a stall)
it has to find a new one. Beyond `SHIFT_FROM_S` the echo canceller feeds the far end that much
later, less `KEEP_S`, so AEC3 sees a short delay it locks onto fast; a new measure replaces the old
only when two in a row agree and it moved by more than `MOVE_S`.

`match()` says how plainly the last `MATCH_WINDOW_S` of microphone signal is a copy of the far end
(the classic cross-correlation double-talk detector): barge-in asks it when the levels alone say
"a voice", since after a stall AEC3 can leak an echo it lost at the level of one.
"""

from __future__ import annotations

import collections
import math

import numpy as np

from audio_io.formats import MIC_FRAME_MS, MIC_FRAME_SAMPLES, MIC_RATE_HZ

WINDOW_S = 2.0  # microphone signal correlated at each measure
MAX_DELAY_S = 0.8  # the longest path looked for
MIN_DELAY_S = -0.25  # and the earliest (clock errors can put the echo before its stamp)
EVERY_FRAMES = 25  # a measure every 250 ms
MIN_PEAK_RATIO = 6.0  # the correlation peak over the mean of its magnitude: a real echo, not chance
MIN_FAR_POWER = 1e5  # -40 dBFS mean square in int16: the far end must have played something
KEEP_S = 0.05  # delay left to AEC3 to find (it handles this one well)
SHIFT_FROM_S = 0.25  # shorter paths are left to AEC3 alone: every shift it sees is a jump to follow
MOVE_S = 0.015  # a measure this close to the current one changes nothing
AGREE_S = 0.005  # two measures in a row within this agree
EDGE_LAGS = round(0.01 * MIC_RATE_HZ)
MATCH_WINDOW_S = 0.08  # microphone signal matched against the far end (1,280 samples: chance stays ~0.2)
MATCH_FAR_POWER = 1e4  # -50 dBFS mean square: a quieter stretch of far end is nobody's echo


class EchoDelay:
    """`far(time_s, pcm)` for each far end frame fed, `mic(time_s, pcm)` per microphone frame;
    `shift_s` is how much later than heard the far end should be fed."""

    def __init__(self) -> None:
        frames = round((WINDOW_S + MAX_DELAY_S - MIN_DELAY_S) * 1000 / MIC_FRAME_MS) + 10
        self._far: collections.deque[tuple[float, np.ndarray]] = collections.deque(maxlen=frames)
        mic_frames = round(WINDOW_S * 1000 / MIC_FRAME_MS)
        self._mic: collections.deque[tuple[float, np.ndarray]] = collections.deque(maxlen=mic_frames)
        recent = round(MATCH_WINDOW_S * 1000 / MIC_FRAME_MS)
        self._recent: collections.deque[tuple[float, np.ndarray]] = collections.deque(maxlen=recent)
        self._count = 0
        self._candidate = math.nan
        self.delay_s = math.nan  # last accepted measure of the path (heard → microphone)
        self.shift_s = 0.0
        self.measures = 0

    def reset(self) -> None:
        """The clocks moved: the measure no longer holds; feed as heard until a new one does (the
        echo then lands after its far end, where barge-in's echo bound looks for it). The next
        measure is taken on `WINDOW_S` of signal after the move: one across it found a path that was
        not there (0.41 s for a 0.16 s one, after a stall), and the far end fed that late leaked whole."""
        self._candidate = self.delay_s = math.nan
        self.shift_s = 0.0
        self._mic.clear()

    def far(self, time_s: float, pcm: np.ndarray) -> None:
        self._far.append((time_s, pcm))

    def mic(self, time_s: float, pcm: np.ndarray, timed: bool = True) -> None:
        """A microphone frame; only `timed` ones (echo alone, as far as the levels tell) are measured."""
        self._recent.append((time_s, pcm))
        self._mic.append((time_s, pcm if timed else np.zeros_like(pcm)))
        self._count += 1
        if self._count % EVERY_FRAMES == 0 and len(self._mic) == self._mic.maxlen:
            self._measure()

    def _measure(self) -> None:
        measured = self.measure()
        if measured is None:
            return
        self.measures += 1
        agrees = abs(measured - self._candidate) <= AGREE_S
        self._candidate = measured
        if not agrees:
            return
        if not math.isfinite(self.delay_s) or abs(measured - self.delay_s) > MOVE_S:
            self.delay_s = measured
            self.shift_s = measured - KEEP_S if measured > SHIFT_FROM_S else 0.0

    def measure(self) -> float | None:
        """The delay now, or None when the far end was quiet or no echo stands out."""
        mic = list(self._mic)
        t0, far = self._far_before(mic)
        n_mic, n_far = len(mic) * MIC_FRAME_SAMPLES, len(far)
        if float(np.mean(far * far)) < MIN_FAR_POWER:
            return None
        near = np.concatenate([p for _, p in mic]).astype(np.float32)
        size = 1 << (n_far + n_mic).bit_length()
        cross = np.fft.rfft(near, size) * np.conj(np.fft.rfft(far, size))
        corr = np.fft.irfft(cross / (np.abs(cross) + 1e-9), size)
        # near[i] at mic[0].time + i; far[j] at t0 + j: the echo of far[j] at near[j - offset].
        offset = round((mic[0][0] - t0) * MIC_RATE_HZ)
        lags = np.arange(round(MIN_DELAY_S * MIC_RATE_HZ), round(MAX_DELAY_S * MIC_RATE_HZ))
        values = corr[(lags - offset) % size]
        best = int(np.argmax(values))
        if values[best] < MIN_PEAK_RATIO * float(np.mean(np.abs(values))):
            return None
        if not EDGE_LAGS <= best < len(lags) - EDGE_LAGS:  # a peak at the search's edge is no path
            return None
        return float(lags[best]) / MIC_RATE_HZ

    def match(self) -> float:
        """The peak normalized cross-correlation of the last `MATCH_WINDOW_S` of microphone signal with
        the far end, over the delays looked for: 1 for an exact (delayed, scaled) copy, near 1 - v/2
        with a voice v times as loud as the echo mixed in, ~0.2 by chance. 0 before the window fills."""
        mic = list(self._recent)
        if len(mic) < (self._recent.maxlen or 0):
            return 0.0
        _, far = self._far_before(mic)
        near = np.concatenate([p for _, p in mic]).astype(np.float64)
        far = far.astype(np.float64)
        n = len(near)
        size = 1 << (len(far) + n).bit_length()
        corr = np.fft.irfft(np.fft.rfft(far, size) * np.conj(np.fft.rfft(near, size)), size)
        energy = np.concatenate([[0.0], np.cumsum(far**2)])
        lags = len(far) - n + 1  # far[j : j + n] against near, for every j
        windows = energy[n : n + lags] - energy[:lags]
        heard = windows > MATCH_FAR_POWER * n  # where the far end was too quiet, no copy of it
        if not heard.any() or not near.any():
            return 0.0
        scale = np.sqrt(windows[heard] * float(np.dot(near, near)))
        return float(np.max(np.abs(corr[:lags][heard]) / scale))

    def _far_before(self, mic: list[tuple[float, np.ndarray]]) -> tuple[float, np.ndarray]:
        """(t0, far end heard from t0 on): all the far end that can echo in these microphone frames."""
        t0 = mic[0][0] + MIN_DELAY_S - MAX_DELAY_S  # far end heard this early can echo in mic[0]
        n_far = len(mic) * MIC_FRAME_SAMPLES + round((MAX_DELAY_S - MIN_DELAY_S) * MIC_RATE_HZ)
        far = np.zeros(n_far, np.float32)
        for time_s, pcm in list(self._far):
            at = round((time_s - t0) * MIC_RATE_HZ)
            if 0 <= at <= n_far - len(pcm):
                far[at : at + len(pcm)] = pcm
        return t0, far
