"""What the echo canceller knows about the echo, frame by frame, for barge-in to weigh speech with.

Three measures on 10 ms frames (mean squares of int16 samples):
- the far end's loudest frame over the last `MAX_PATH_S` (an echo of it can still be arriving), as
  fed to AEC3 and as played by wall clock (so a clock that is off cannot hide an echo's source),
- the coupling: how loud the microphone gets relative to that, at most (a peak that decays slowly,
  starting at 0 dB: an echo as loud as what was played), so an echo bound = coupling × loudest,
- the attenuation AEC3 has been seen to achieve while the far end played: its echo return loss
  enhancement (ERLE), smoothed fast on frames that look like echo alone and slowly on frames that
  look like someone talking (double talk must not make a converged canceller look unconverged).

The residual echo to expect is the bound less the ERLE, but at most `ERLE_CREDIT_DB` less; a frame
whose residual is well above it is evidence of a voice in the room that is not the far end. Where
AEC3 leaks most, it is not counted as converged (so barge-in also wants the residual above the
whole bound): the first second of far end after a silence (a converged AEC3 leaked to within 8 dB
of the echo at a reply's onset), and after any move of either stream's clock (a reopened or
stalled stream), which makes the ERLE start again.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

from audio_io.formats import MIC_FRAME_MS

MAX_PATH_S = 0.7  # the longest echo path (and lead) a far end frame is remembered for
PLAYED_SLACK_S = 0.2  # how late the canceller may read what the player played
FAR_ACTIVE_POWER = 1e4  # -50 dBFS: quieter far end frames cannot echo audibly
COUPLING_DECAY_DB_PER_S = 1.0
ERLE_FAST = 0.1  # per frame, on frames that look like echo alone
ERLE_SLOW = 0.005  # per frame, on frames with a voice above the expected residual
ERLE_CONVERGED_DB = 15.0
ERLE_CREDIT_DB = 25.0  # at most this much is taken off the bound once converged
MIN_ACTIVE_FRAMES = 30  # far end frames before the ERLE is believed
ONSET_FRAMES = 100  # 1 s: AEC3 leaks at the start of a reply whatever it learnt before; not converged yet
EVIDENCE_MARGIN_DB = 6.0  # a residual this far above the expected echo is not echo
CLOCK_JUMP_S = 0.02  # the far end's clock moving more than this: AEC3 must converge again
_TINY = 1.0


@dataclass(frozen=True, slots=True)
class EchoState:
    """Per frame: how loud the remaining echo may be, and whether the canceller has converged."""

    far_power: float  # loudest far end frame that can still echo
    echo_bound: float  # loudest echo of it the microphone may carry (before cancellation)
    expected_residual: float  # what may remain of that echo after cancellation
    residual_power: float  # the cleaned frame
    erle_db: float
    converged: bool

    @property
    def far_active(self) -> bool:
        return self.far_power > FAR_ACTIVE_POWER

    @property
    def near_evidence_db(self) -> float:
        """How far the residual rises above the echo that may remain (dB; high: a voice in the room)."""
        return 10 * math.log10(max(self.residual_power, _TINY) / max(self.expected_residual, _TINY))


IDLE = EchoState(0.0, 0.0, 0.0, 0.0, 0.0, False)


class EchoMeter:
    """Fed by the canceller: `far_frame` for each reverse frame, `frame` for each microphone frame."""

    def __init__(self) -> None:
        frames = round(MAX_PATH_S * 1000 / MIC_FRAME_MS)
        self._far: collections.deque[float] = collections.deque(maxlen=frames)
        self._played: collections.deque[tuple[float, float]] = collections.deque()
        self._coupling = 1.0
        self._decay = 10 ** (-COUPLING_DECAY_DB_PER_S / 10 * MIC_FRAME_MS / 1000)
        self._erle_db = 0.0
        self._active_frames = 0
        self._onset_frames = 0  # frames since the far end last became able to echo
        self._clock_s = math.nan
        self.state = IDLE

    def played(self, now_s: float, power: float) -> None:
        """Far end the player has played by `now_s` (wall clock), fed to AEC3 yet or not: an echo
        cannot come before its sound, whatever the clocks say, so the bound never misses it."""
        self._played.append((now_s, power))
        while self._played and self._played[0][0] < now_s - MAX_PATH_S - PLAYED_SLACK_S:
            self._played.popleft()

    def far_frame(self, power: float) -> None:
        self._far.append(power)

    def clock(self, clock_s: float) -> bool:
        """The far end's clock; moving (at once or step by step) means the echo moved and the
        canceller is no longer proven. True when it moved."""
        moved = abs(clock_s - self._clock_s)
        if math.isfinite(self._clock_s) and not (math.isfinite(moved) and moved > CLOCK_JUMP_S):
            return False
        restarted = math.isfinite(self._clock_s)
        if restarted:
            self.restart()
        self._clock_s = clock_s
        return restarted

    def restart(self) -> None:
        self._erle_db = 0.0
        self._active_frames = 0

    def frame(self, raw_power: float, residual_power: float) -> EchoState:
        far = max(max(self._far, default=0.0), max((p for _, p in self._played), default=0.0))
        self._onset_frames = self._onset_frames + 1 if far > FAR_ACTIVE_POWER else 0
        if far <= FAR_ACTIVE_POWER:
            self.state = EchoState(far, 0.0, 0.0, residual_power, self._erle_db, self.converged)
            return self.state
        bound = self._coupling * far
        credit_db = min(self._erle_db, ERLE_CREDIT_DB) if self.converged else 0.0
        expected = bound / 10 ** (credit_db / 10)
        evidence = residual_power > expected * 10 ** (EVIDENCE_MARGIN_DB / 10)
        ratio = raw_power / far
        decayed = max(self._coupling * self._decay, 1e-6)
        self._coupling = decayed if evidence else max(ratio, decayed)
        if raw_power > FAR_ACTIVE_POWER:
            erle = 10 * math.log10(max(raw_power, _TINY) / max(residual_power, _TINY))
            rate = ERLE_SLOW if evidence else ERLE_FAST
            self._erle_db += rate * (erle - self._erle_db)
            self._active_frames += 1
        self.state = EchoState(far, bound, expected, residual_power, self._erle_db, self.converged)
        return self.state

    @property
    def converged(self) -> bool:
        return (
            self._active_frames >= MIN_ACTIVE_FRAMES
            and self._onset_frames >= ONSET_FRAMES
            and self._erle_db >= ERLE_CONVERGED_DB
        )
