"""Where the echo really is: the delay from the far end (stamped with when it is heard) to its echo in
the microphone, measured from the signals themselves (GCC-PHAT over the last `WINDOW_S`).

AEC3 finds delays by itself, but not reliably beyond a few hundred ms (a Bluetooth speaker's path plus
the lead), and every time the streams' clocks are off (an underrun the host filled or dropped, a stall)
it has to find a new one. Beyond `SHIFT_FROM_S` (any path, for a new AEC3 on the same device plugged
back) the echo canceller feeds the far end that much later, less `KEEP_S`, so AEC3 sees a short delay
it locks onto fast; a new measure replaces the old only when two in a row agree and it moved by
more than `MOVE_S`, and moves the shift only beyond the hold's reach (below): within it, the hold
feeds the move. Only what can be the echo alone is measured (no voice by the levels, and the far end
played near the measured path), at least `MIN_TIMED_S` of it: at a reply's end talked over, the
user's voice gave a path 0.6 s too long.

AEC3 keeps the echo where it found it. When the echo moves (the host or the microphone dropped or
added a few ms no clock showed) it finds it again only after one to two seconds, 30 to 60 dB less
cancelled meanwhile (seen on the rig: 6 and 26 ms earlier, 10 to 17 dB left). So every
`HOLD_EVERY_FRAMES` the echo is also looked for on the last `HOLD_WINDOW_S` of microphone signal
that is the echo alone, within `MAX_AHEAD_S` of where it was. Once two checks agree it moved (and a
search over all delays finds it nowhere else), the far end is fed that much ahead of its stamps
(`ahead_s`, behind when negative), and AEC3 sees it where it holds it: in a test with the real
AEC3, about 50 dB stay cancelled from half a second after such a move, where 4 to 24 dB did without.
A drift under `HOLD_MOVE_S` AEC3 follows by itself, and a move out of reach it finds anew: the hold
follows both. The hold outlives a move of the clocks, which moves the echo as AEC3 sees it too.
Found still after a reset, on signal after it with nothing fed ahead, the echo is `unmoved`.

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
MIN_TIMED_S = 1.0  # of the window, this much must be able to be the echo alone
KEEP_S = 0.05  # delay left to AEC3 to find (it handles this one well)
SHIFT_FROM_S = 0.25  # shorter paths are left to AEC3 alone: every shift it sees is a jump to follow
MOVE_S = 0.015  # a measure this close to the current one changes nothing
AGREE_S = 0.005  # two measures in a row within this agree
EDGE_LAGS = round(0.01 * MIC_RATE_HZ)
MATCH_WINDOW_S = 0.08  # microphone signal matched against the far end (1,280 samples: chance stays ~0.2)
MATCH_FAR_POWER = 1e4  # -50 dBFS mean square: a quieter stretch of far end is nobody's echo
HOLD_WINDOW_S = 0.2  # microphone signal correlated at each check of where the echo is held
HOLD_EVERY_FRAMES = 5
HOLD_MOVE_S = 0.0025  # a move this large is fed under the hold (1 to 2 ms cost AEC3 little)
HOLD_AGREE_S = 0.0005
HOLD_NOT_ALONE_FRAMES = 2  # frames of the window that may look like more than the echo (the echo's
# own onsets can; a voice over it fills the window)
MAX_AHEAD_S = 0.06  # the far end is fed at most this far ahead (it must have been written by then)
# or behind, and the echo is looked for this far either side of where it was
_HOLD_FRAMES = round(HOLD_WINDOW_S * 1000 / MIC_FRAME_MS)


class EchoDelay:
    """`far(time_s, pcm)` for each far end frame fed, `mic(time_s, pcm)` per microphone frame;
    `shift_s` is how much later than heard the far end should be fed."""

    def __init__(self) -> None:
        frames = round((WINDOW_S + MAX_DELAY_S - MIN_DELAY_S) * 1000 / MIC_FRAME_MS) + 10
        self._far: collections.deque[tuple[float, np.ndarray]] = collections.deque(maxlen=frames)
        mic_frames = round(WINDOW_S * 1000 / MIC_FRAME_MS)
        self._mic: collections.deque[tuple[float, np.ndarray]] = collections.deque(maxlen=mic_frames)
        self._timed: collections.deque[bool] = collections.deque(maxlen=mic_frames)
        self._near: collections.deque[tuple[float, np.ndarray]] = collections.deque(maxlen=_HOLD_FRAMES)
        self._alone: collections.deque[bool] = collections.deque(maxlen=_HOLD_FRAMES)
        self._count = 0
        self._candidate = self._hold_candidate = self._elsewhere = math.nan
        self.delay_s = math.nan  # last accepted measure of the path (heard → microphone)
        self.shift_s = 0.0
        self.held_s = math.nan  # path + ahead_s where the echo was last seen still: where AEC3 holds it
        self.ahead_s = 0.0  # how much ahead of its stamps the far end is fed (see the module's doc)
        self.measures = 0
        self.resets = 0  # times the clocks moved: the echo canceller starts over (a device fault)
        self.unmoved = False  # since the last reset the echo was found still where AEC3 holds it
        self._reset_at, self._ahead_at_reset = 0, 0.0

    def reset(self) -> None:
        """The clocks moved. The next measure is taken on `WINDOW_S` of signal after the move: one
        across it found a path that was not there (0.41 s for a 0.16 s one, after a stall), and the
        far end fed that late leaked whole. The path, its shift and where AEC3 holds the echo stay:
        the far end's anchor moved with the sound if it moved right, and if not, the hold feeds the
        echo back under AEC3 within `MAX_AHEAD_S`, a new measure moves the shift, and the canceller's
        trial drops a shift AEC3 does not converge with. (Dropping the shift at every move left
        AEC3 to find a 300 to 500 ms path alone for seconds: 11.6 to 15.7 dB in such cells.)"""
        self.resets += 1
        self._hold_candidate = self._elsewhere = math.nan
        self.unmoved = False
        self._reset_at, self._ahead_at_reset = self._count, self.ahead_s
        self._measure_anew()

    def drop_shift(self) -> None:
        """A shift AEC3 did not converge with was a wrong measure: feed as heard, measure anew."""
        self._shift(0.0)
        self.delay_s = math.nan
        self._measure_anew()

    def _measure_anew(self) -> None:
        """The next measure on a whole window of signal from now on."""
        self._candidate = math.nan
        self._mic.clear()
        self._timed.clear()

    def far(self, time_s: float, pcm: np.ndarray) -> None:
        self._far.append((time_s, pcm))

    def mic(self, time_s: float, pcm: np.ndarray, timed: bool = True) -> None:
        """A microphone frame; only `timed` ones (echo alone, as far as the levels tell) are measured."""
        self._near.append((time_s, pcm))
        self._mic.append((time_s, pcm))
        self._timed.append(timed)
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
            if abs(measured - (self.held_s - self.ahead_s)) > MAX_AHEAD_S:
                self.held_s = math.nan  # gone out of the hold's reach: held where it is now
            if not math.isfinite(self.held_s) or abs(self.held_s - measured) > MAX_AHEAD_S:
                # Within the hold's reach a shift stays: the hold already feeds the move. Moving the
                # shift by it too (and dropping the hold) lost the echo on the rig: 8.0 to 9.4 dB.
                shifted = measured > SHIFT_FROM_S or (self.shift_s > 0.0 and measured > KEEP_S)
                self._shift(measured - KEEP_S if shifted else 0.0)
            self.delay_s = measured

    def _shift(self, shift_s: float) -> None:
        """Feed the far end `shift_s` later than heard. Another shift shows AEC3 the echo elsewhere:
        it is held afresh, wherever it lands."""
        if shift_s != self.shift_s:
            self.held_s, self.ahead_s = math.nan, 0.0
        self.shift_s = shift_s

    def check_hold(self, echo_alone: bool) -> None:
        """After `mic`: whether that frame is the echo alone (a voice over it moves the peak: seen on
        the rig, 3 to 20 ms). Every `HOLD_EVERY_FRAMES` of echo alone, where it is held is checked."""
        self._alone.append(echo_alone)
        if self._count % HOLD_EVERY_FRAMES or not (math.isfinite(self.held_s) or math.isfinite(self.delay_s)):
            return
        if len(self._near) == self._near.maxlen and self._alone.count(False) <= HOLD_NOT_ALONE_FRAMES:
            self._check_hold()

    def _check_hold(self) -> None:
        """Where the echo is now, near where it was: if it moved, feed the far end as far ahead."""
        reference = self.held_s - self.ahead_s if math.isfinite(self.held_s) else self.delay_s
        lag = self._peak(list(self._near), reference - MAX_AHEAD_S, reference + MAX_AHEAD_S)
        if lag is None:
            return
        agrees = abs(lag - self._hold_candidate) <= HOLD_AGREE_S
        self._hold_candidate = lag
        if not agrees:
            return
        seen = lag + self.ahead_s  # where AEC3 is shown it, as fed now
        if abs(seen - self.held_s) <= HOLD_MOVE_S:
            self.held_s = seen  # a drift AEC3 follows by itself
            # Both checks on signal after the reset, nothing fed ahead since: the echo did not move.
            after_reset = self._count - self._reset_at >= _HOLD_FRAMES + HOLD_EVERY_FRAMES
            self.unmoved = self.unmoved or (after_reset and self.ahead_s == self._ahead_at_reset)
            return
        # Close by, the peak of an echo that is elsewhere can look like a move (seen on the rig after
        # a device came back): a move is fed only if the echo is nowhere else.
        anywhere = self._peak(list(self._near), MIN_DELAY_S, MAX_DELAY_S)
        if anywhere is None:
            return
        elsewhere, self._elsewhere = self._elsewhere, anywhere
        if abs(anywhere - lag) <= HOLD_AGREE_S and abs(self.held_s - lag) <= MAX_AHEAD_S:
            self.ahead_s = self.held_s - lag
        elif abs(anywhere - elsewhere) <= HOLD_AGREE_S:
            # First seen, or out of reach of feeding ahead (AEC3 finds it anew): held there. Only when
            # two searches agree: one on 0.2 s found a 0.79 s echo for a 0.13 s one on the rig, and
            # held there, the 35 ms move was left to AEC3 (7.9 dB over the cell).
            self.held_s = anywhere + self.ahead_s

    def relearn(self, same_path: bool) -> None:
        """A new AEC3 hears the output: where the old one held the echo is gone. On the same path (the
        same device plugged back), the path measured before is shown to it at `KEEP_S`, however
        short, as a new AEC3 has no delay to follow yet. On the rig a new AEC3 left to find a 0.18 s
        one leaked 4 to 15 dB for a second or two after its first half second, in most runs under
        load; the same signals replayed with the far end fed to leave it 80 ms kept 26 to 67 dB
        throughout. Once shifted, the measures move the shift, not drop it."""
        self.held_s = self._hold_candidate = self._elsewhere = math.nan
        self.ahead_s = 0.0
        if same_path and math.isfinite(self.delay_s) and self.delay_s > KEEP_S:
            self._shift(self.delay_s - KEEP_S)

    def measure(self) -> float | None:
        """The delay now, or None when less than `MIN_TIMED_S` of the window can be the echo alone,
        the far end was quiet, or no echo stands out."""
        mic = list(self._mic)
        echoing = self._echoing(mic) & np.array(self._timed)
        if np.count_nonzero(echoing) * MIC_FRAME_MS < MIN_TIMED_S * 1000:
            return None
        mic = [(t, pcm if keep else np.zeros_like(pcm)) for (t, pcm), keep in zip(mic, echoing, strict=True)]
        return self._peak(mic, MIN_DELAY_S, MAX_DELAY_S)

    def _echoing(self, mic: list[tuple[float, np.ndarray]]) -> np.ndarray:
        """Which frames the far end can echo in: it played within `MAX_AHEAD_S` of the measured path
        (of any path looked for before one is). After a reply stops, the levels take a voice for its
        echo for as long as the echo could still arrive: on the rig, measured, it gave 0.7 s for a
        0.15 s path (0.2 to 1 s of such frames in the window)."""
        measured = math.isfinite(self.delay_s)
        low = self.delay_s - MAX_AHEAD_S if measured else MIN_DELAY_S
        high = self.delay_s + MAX_AHEAD_S if measured else MAX_DELAY_S
        t0, far = self._far_before(mic, low, high)
        energy = np.concatenate([[0.0], np.cumsum(far.astype(np.float64) ** 2)])
        span = round((high - low) * MIC_RATE_HZ) + MIC_FRAME_SAMPLES
        starts = np.array([round((time_s - high - t0) * MIC_RATE_HZ) for time_s, _ in mic])
        starts = np.clip(starts, 0, len(far) - span)
        return (energy[starts + span] - energy[starts]) / span >= MATCH_FAR_POWER

    def _peak(self, mic: list[tuple[float, np.ndarray]], low_s: float, high_s: float) -> float | None:
        """The delay from `low_s` to `high_s` where `mic` correlates best with the far end (GCC-PHAT),
        or None when the far end was quiet or no echo stands out."""
        t0, far = self._far_before(mic, low_s, high_s)
        n_mic, n_far = len(mic) * MIC_FRAME_SAMPLES, len(far)
        if float(np.mean(far * far)) < MIN_FAR_POWER:
            return None
        near = np.concatenate([p for _, p in mic]).astype(np.float32)
        size = 1 << (n_far + n_mic).bit_length()
        cross = np.fft.rfft(near, size) * np.conj(np.fft.rfft(far, size))
        corr = np.fft.irfft(cross / (np.abs(cross) + 1e-9), size)
        # near[i] at mic[0].time + i; far[j] at t0 + j: the echo of far[j] at near[j - offset].
        offset = round((mic[0][0] - t0) * MIC_RATE_HZ)
        lags = np.arange(round(low_s * MIC_RATE_HZ), round(high_s * MIC_RATE_HZ))
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
        recent = round(MATCH_WINDOW_S * 1000 / MIC_FRAME_MS)
        mic = list(self._near)[-recent:]
        if len(mic) < recent:
            return 0.0
        _, far = self._far_before(mic, MIN_DELAY_S, MAX_DELAY_S)
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

    def _far_before(
        self, mic: list[tuple[float, np.ndarray]], low_s: float, high_s: float
    ) -> tuple[float, np.ndarray]:
        """(t0, far end heard from t0 on): all the far end that can echo in these microphone frames
        over a path from `low_s` to `high_s`."""
        t0 = mic[0][0] - high_s  # far end heard this early can echo in mic[0]
        n_far = len(mic) * MIC_FRAME_SAMPLES + round((high_s - low_s) * MIC_RATE_HZ)
        far = np.zeros(n_far, np.float32)
        for time_s, pcm in list(self._far):
            at = round((time_s - t0) * MIC_RATE_HZ)
            if 0 <= at <= n_far - len(pcm):
                far[at : at + len(pcm)] = pcm
        return t0, far
