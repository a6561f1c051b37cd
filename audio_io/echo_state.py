"""What the echo canceller knows about the echo, frame by frame, for barge-in to weigh speech with.

Three measures on 10 ms frames (mean squares of int16 samples):
- the far end's loudest frame over the last `MAX_PATH_S` (an echo of it can still be arriving), as
  fed to AEC3 and as played by wall clock (so a clock that is off cannot hide an echo's source),
- the coupling: how loud the microphone gets relative to that, at most: the largest ratio over the
  last `COUPLING_WINDOW_S` of far end that could echo (frames with a voice above the expected echo
  left out, and after `LEARN_S` loud frames AEC3 did not take `ECHO_LIKE_DB` off, which may be a
  voice), 0 dB (an echo as loud as what was played) until `LEARN_S` of it was heard; so an echo
  bound = coupling × loudest. With no echo path at all (headphones, a muted speaker, the app's own
  end-to-end rig) the bound falls to the microphone's floor after `LEARN_S` and stays there from
  one reply to the next: a voice then counts at once, however soft,
- the attenuation AEC3 has been seen to achieve while the far end played: its echo return loss
  enhancement (ERLE), rising fast on frames that look like echo alone and falling slowly (double
  talk must not make a converged canceller look unconverged).

The residual echo to expect is the bound less the ERLE, but at most `ERLE_CREDIT_DB` less; a frame
whose residual is well above it is evidence of a voice in the room that is not the far end. Where
AEC3 leaks most, it is not counted as converged (so barge-in also wants the residual above the
whole bound): the first second of far end after a silence (a converged AEC3 leaked to within 8 dB
of the echo at a reply's onset), after any move of the echo, and when the residual is louder than
the microphone (AEC3 subtracting an echo it has misplaced: after a stall the host can play a burst
of audio later than its callback said, and no clock shows it). A move is one of either stream's
clock (a reopened or stalled stream), of the far end as fed (a new shift), or one only the
microphone shows (digital silence where the echo must be: sound lost on the way in); the ERLE then
starts again, learnt only once a hold is over: AEC3 can lose the echo a little after the move, and
an ERLE learnt before that falls slowly (on the rig under load a reply paused for its own echo as
a hold ended). A hold for sound lost on the way in ends once the echo is found still where AEC3
holds it (`EchoDelay.unmoved`): the sound was lost in place, nothing moved, and the ERLE learnt
since the loss stands; one never found so starts the ERLE again at its end, as any hold. A learnt
coupling below `NO_ECHO_COUPLING` (`no_echo`) counts as converged: there is nothing to cancel, and
barge-in must be as fast as without a canceller. Levels cannot tell a voice from an echo AEC3 lost
(after a stall the host can play the far end where no clock shows, and AEC3 leaks it whole for a
second); the signal can: a microphone that is plainly a copy of the far end (`EchoDelay.match` >=
`ECHO_COPY_MATCH`) carries no voice worth a barge-in, and how plain a copy it is bounds how loud a
voice in it can be (`matched`).

AEC3's suppressor ducks the first 50 to 70 ms of a voice that starts over the echo, so once both have
converged the evidence is weighed on the residual of our own linear filter (`linear`, `linear_echo`),
with the attenuation it has shown as the credit: double talk is heard from its first frames.
"""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass, replace

import numpy as np

from audio_io.formats import MIC_FRAME_MS, MIC_FRAME_SAMPLES

MAX_PATH_S = 0.7  # the longest echo path (and lead) a far end frame is remembered for
PLAYED_SLACK_S = 1.0  # how late the canceller reads, and the host plays, what the player's callback gave
# (after a stall, PulseAudio's ALSA plugin took up to a second of audio at once and played it later)
FAR_ACTIVE_POWER = 1e4  # -50 dBFS: quieter far end frames cannot echo audibly
COUPLING_WINDOW_S = 4.0  # the coupling is the largest ratio seen over this much far end activity
LEARN_S = 1.2  # far end activity before the measured coupling replaces 0 dB (longer than any path)
NO_ECHO_POWER = 1e3  # -60 dBFS: quieter microphone frames carry no echo worth learning from
NO_ECHO_COUPLING = 1e-5  # -50 dB: a learnt coupling below this is no echo path at all
ERLE_FAST = 0.1  # per frame, rising, on frames that look like echo alone
ERLE_FALL = 0.01  # per frame, falling: a voice under the evidence margin must not undo convergence
ERLE_SLOW = 0.005  # per frame, on frames with a voice above the expected residual
DIVERGED_RATIO = 2.0  # a residual 3 dB above the microphone itself: AEC3 subtracts a misplaced echo
DIVERGED_FRAMES = 5  # that many frames in a row (single frames do it at a voice's edges)
ECHO_LIKE_DB = 10.0  # a loud frame AEC3 took this much off was echo: it may teach the coupling
ERLE_CONVERGED_DB = 15.0
ERLE_CREDIT_DB = 25.0  # at most this much is taken off the bound once converged
MIN_ACTIVE_FRAMES = 30  # far end frames before the ERLE is believed
ONSET_FRAMES = 100  # 1 s: AEC3 leaks at the start of a reply whatever it learnt before; not converged yet
EVIDENCE_MARGIN_DB = 6.0  # a residual this far above the expected echo is not echo
STALL_HOLD_S = 2.0  # after the output stalled, no credit this long (AEC3 lost its echo for ~1 s after)
SHIFT_HOLD_S = 0.5  # after the far end was fed shifted anew: AEC3 lost the echo within 0.15 s on the rig
ECHO_COPY_MATCH = 0.98  # a microphone this correlated with the far end is echo (any voice 14 dB under it)
LINEAR_UNCONFIRMED_FRAMES = 30  # a voice only the linear filter hears for 300 ms: it lost the echo
# A microphone this much like the far end is at least 90 % echo: a filter that cancels takes 9 dB or
# more off it, one that lost the echo (seen on the rig: 0.2 to 3 dB off, match 0.92 to 1.0) less. The
# match is over the last 80 ms, so the first frames of a voice over the echo look the same: AEC3 judges
# such a frame, and only 50 ms of them in a row restart the filter. Where the echo is held (`echo_delay`)
# is checked on such frames too.
MOSTLY_ECHO_MATCH = 0.95
LINEAR_LOST_DB = 6.0
LINEAR_LOST_FRAMES = 5
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
    far_match: float = 0.0  # how plainly the microphone is a copy of the far end (1: exactly), when asked

    @property
    def far_active(self) -> bool:
        return self.far_power > FAR_ACTIVE_POWER

    @property
    def near_evidence_db(self) -> float:
        """How far the residual rises above the echo that may remain (dB; high: a voice in the room);
        0 for a microphone that is a copy of the far end, whatever its level."""
        if self.far_match >= ECHO_COPY_MATCH:
            return 0.0
        return 10 * math.log10(max(self.residual_power, _TINY) / max(self.expected_residual, _TINY))


IDLE = EchoState(0.0, 0.0, 0.0, 0.0, 0.0, False)


class EchoMeter:
    """Fed by the canceller: `far_frame` for each reverse frame, `frame` for each microphone frame."""

    def __init__(self) -> None:
        frames = round(MAX_PATH_S * 1000 / MIC_FRAME_MS)
        self._far: collections.deque[float] = collections.deque(maxlen=frames)
        self._played: collections.deque[tuple[float, float]] = collections.deque()
        window = round(COUPLING_WINDOW_S * 1000 / MIC_FRAME_MS)
        self._ratios: collections.deque[float] = collections.deque(maxlen=window)
        self._learn_frames = round(LEARN_S * 1000 / MIC_FRAME_MS)
        self._heard_frames = 0  # far end frames that could echo, since the start
        self._erle_db = self._linear_erle_db = 0.0
        self._raw_power = 0.0
        self._aec3_state = IDLE  # the frame's state as AEC3's output gave it
        self._linear_judges = False  # the frame's state is the linear filter's residual, not AEC3's
        self._unconfirmed = 0  # frames in a row only the linear filter hears a voice in
        self._untaken = 0  # frames in a row much like the far end that the linear filter took little off
        self.linear_lost = False  # the linear filter's residual is no longer to be believed: reset it
        self.linear_voice = False  # its residual rose above the echo it leaves (used or not): do not adapt
        self._active_frames = 0
        self._onset_frames = 0  # frames since the far end last became able to echo
        self._hold_frames = 0
        self._hold_ends_unmoved = False  # the hold is for sound lost on the way in: `unmoved` ends it
        self._diverged_frames = 0
        self._clock_s = math.nan
        self._clock_lost = False
        self.state = IDLE

    def played(self, now_s: float, power: float) -> None:
        """Far end the player has played by `now_s` (wall clock), fed to AEC3 yet or not: an echo
        cannot come before its sound, whatever the clocks say, so the bound never misses it."""
        self._played.append((now_s, power))
        self._forget_played(now_s)

    def _forget_played(self, now_s: float) -> None:
        """What was played too long ago to echo now (also once nothing plays: a lost device)."""
        while self._played and self._played[0][0] < now_s - MAX_PATH_S - PLAYED_SLACK_S:
            self._played.popleft()

    def far_frame(self, power: float) -> None:
        self._far.append(power)

    def clock(self, clock_s: float) -> bool:
        """The far end's clock; moving (at once or step by step) means the echo moved and the
        canceller is no longer proven. True when it moved. Losing it (inf: for half a second after a
        late callback, the player re-estimates it) unproves the canceller too: nothing is fed to AEC3
        meanwhile while the echo goes on."""
        if not math.isfinite(clock_s):
            if math.isfinite(self._clock_s) and not self._clock_lost:
                self.restart()
            self._clock_lost = math.isfinite(self._clock_s)
            return False
        self._clock_lost = False
        moved = abs(clock_s - self._clock_s)
        if math.isfinite(self._clock_s) and moved <= CLOCK_JUMP_S:
            return False
        restarted = math.isfinite(self._clock_s)
        if restarted:
            self.restart()
        self._clock_s = clock_s
        return restarted

    def restart(self, hold_s: float = 0.0, unless_unmoved: bool = False) -> None:
        """The echo may have moved: the canceller proves itself again (and not before `hold_s`; with
        `unless_unmoved`, sooner if `unmoved()` says it did not move)."""
        self._erle_db = self._linear_erle_db = 0.0
        self._active_frames = 0
        hold_frames = round(hold_s * 1000 / MIC_FRAME_MS)
        if hold_frames:
            self._hold_ends_unmoved = unless_unmoved and (self._hold_ends_unmoved or not self._hold_frames)
        self._hold_frames = max(self._hold_frames, hold_frames)

    def unmoved(self) -> None:
        """The echo was found still where AEC3 holds it after sound was lost on the way in
        (`EchoDelay.unmoved`): that hold ends, and the frames since the loss, the echo where AEC3
        holds it, are the canceller's proof. At gain 1.0 on the rig, a user talking in the 2 s
        after one lost frame (AEC3 still taking 75 dB off) went unheard: a voice no louder than the
        echo is no evidence unproven. Proving itself again from the release, it heard one talking
        0.15 to 0.45 s after the loss 0.65 s after their onset (0.09 to 0.21 s now)."""
        if self._hold_ends_unmoved:
            self._hold_frames = 0
            self._hold_ends_unmoved = False

    def frame(self, raw_power: float, residual_power: float) -> EchoState:
        self._linear_judges = False
        self._forget_played(time.perf_counter())
        far = max(max(self._far, default=0.0), max((p for _, p in self._played), default=0.0))
        self._hold_frames = max(0, self._hold_frames - 1)
        ran_out = self._hold_ends_unmoved and not self._hold_frames  # never found unmoved
        if ran_out or (self._hold_frames and not self._hold_ends_unmoved):
            # AEC3 can still lose the echo: what it takes off meanwhile proves nothing (unless the
            # hold ends unmoved: kept for `unmoved()`)
            self._hold_ends_unmoved = False
            self._erle_db = self._linear_erle_db = 0.0
            self._active_frames = 0
        self._onset_frames = self._onset_frames + 1 if far > FAR_ACTIVE_POWER else 0
        if far <= FAR_ACTIVE_POWER:
            self.state = EchoState(far, 0.0, 0.0, residual_power, self._erle_db, self.converged)
            return self.state
        self._heard_frames += 1
        diverged = raw_power > FAR_ACTIVE_POWER and residual_power > raw_power * DIVERGED_RATIO
        self._diverged_frames = self._diverged_frames + 1 if diverged else 0
        if self._diverged_frames == DIVERGED_FRAMES:
            self.restart()  # no voice keeps the residual louder than the microphone: AEC3 diverged
        residual_power = min(residual_power, raw_power)  # what it added is its own error, not a voice
        bound = self.coupling * far
        converged = self.no_echo or self.converged
        credit_db = min(self._erle_db, ERLE_CREDIT_DB) if converged else 0.0
        expected = bound / 10 ** (credit_db / 10)
        evidence = residual_power > expected * 10 ** (EVIDENCE_MARGIN_DB / 10)
        erle = 10 * math.log10(max(raw_power, _TINY) / max(residual_power, _TINY))
        learning = self._heard_frames < self._learn_frames
        if not evidence and (learning or raw_power < NO_ECHO_POWER or erle >= ECHO_LIKE_DB):
            self._ratios.append(raw_power / far)
        if raw_power > FAR_ACTIVE_POWER:
            self._erle_db = _follow(self._erle_db, erle, evidence)
            self._active_frames += 1
        self._raw_power = raw_power
        self.state = EchoState(far, bound, expected, residual_power, self._erle_db, converged)
        return self.state

    def linear(self, residual_power: float) -> EchoState:
        """The frame's residual after the linear filter (`linear_echo`), which has no suppressor to
        duck a voice that starts over the echo: once both it and AEC3 have shown they cancel, the
        evidence is weighed on it, with its own attenuation as the credit."""
        state = self._aec3_state = self.state
        self.linear_voice = False
        if not state.far_active or self.no_echo:
            return state
        usable = self.linear_converged
        credit_db = min(self._linear_erle_db, ERLE_CREDIT_DB) if usable else 0.0
        expected = state.echo_bound / 10 ** (credit_db / 10)
        linear_raw, residual_power = residual_power, min(residual_power, self._raw_power)
        evidence = self.linear_voice = residual_power > expected * 10 ** (EVIDENCE_MARGIN_DB / 10)
        self._untaken = self._untaken if evidence else 0
        if self._raw_power > FAR_ACTIVE_POWER:
            erle = 10 * math.log10(max(self._raw_power, _TINY) / max(residual_power, _TINY))
            self._linear_erle_db = _follow(self._linear_erle_db, erle, evidence)
        # A residual at or above the microphone: on the rig the far end as fed sometimes missed the echo
        # for a few frames at an onset (the estimate then adds what it takes away); AEC3 judges. Just
        # under it is a voice over a quiet stretch of echo (0.1 to 0.3 dB on the rig), which AEC3 ducks:
        # with a 0.5 dB margin here, double talk at gain 1.0 was heard up to 30 ms later.
        if not usable or linear_raw >= self._raw_power:
            return state
        aec3_voice = state.near_evidence_db >= EVIDENCE_MARGIN_DB
        self._unconfirmed = self._unconfirmed + 1 if evidence and not aec3_voice else 0
        if self._unconfirmed >= LINEAR_UNCONFIRMED_FRAMES:  # a voice shows in AEC3's output by now
            self.linear_lost = True
        self.state = replace(state, residual_power=residual_power, expected_residual=expected)
        self._linear_judges = True
        return self.state

    @property
    def linear_converged(self) -> bool:
        return self.state.converged and self._linear_erle_db >= ERLE_CONVERGED_DB

    def linear_moved(self) -> None:
        """The linear filter starts again (its path was measured anew, or it lost the echo)."""
        self._linear_erle_db = 0.0
        self._unconfirmed = self._untaken = 0
        self.linear_lost = False

    def matched(self, far_match: float) -> EchoState:
        """The frame's microphone against the far end (`EchoDelay.match`), asked when the levels say
        "a voice". The canceller is not made to converge again for a copy: in double talk over a
        loud echo that would take the credit away until the user stops, and barge-in with it. But a
        copy this close leaves room for a voice only so loud (1 - match is about half its power over
        the echo's): AEC3's residual well above that is echo it left, and its ERLE is what it shows
        (on the rig under load, after the echo moved unseen, the estimate stayed at 60 dB for AEC3's
        13, and as the match dipped the reply paused). The linear filter's residual is not believed
        on a copy it took little off (AEC3 judges that frame), and 50 ms of them in a row mean it lost
        the echo: it starts again."""
        aec3 = self._aec3_state if self._linear_judges else self.state
        voice_at_most = 2 * (1 - far_match) * self._raw_power * 10 ** (EVIDENCE_MARGIN_DB / 10)
        if aec3.residual_power > max(voice_at_most, _TINY):
            left_db = 10 * math.log10(max(self._raw_power, _TINY) / aec3.residual_power)
            self._erle_db = min(self._erle_db, left_db)
        state = replace(self.state, far_match=far_match)
        took_off_db = 10 * math.log10(max(self._raw_power, _TINY) / max(state.residual_power, _TINY))
        untaken = self._linear_judges and far_match >= MOSTLY_ECHO_MATCH and took_off_db < LINEAR_LOST_DB
        self._untaken = self._untaken + 1 if untaken else 0
        if untaken:
            self.linear_lost = self.linear_lost or self._untaken >= LINEAR_LOST_FRAMES
            state = replace(self._aec3_state, far_match=far_match)
        self.state = state
        return self.state

    @property
    def no_echo(self) -> bool:
        """Nothing of what was played comes back (headphones, a muted speaker): nothing to cancel."""
        return self._heard_frames >= self._learn_frames and self.coupling < NO_ECHO_COUPLING

    def relearn(self) -> None:
        """Another output device, or one lost and back: its echo path is to be measured afresh, and
        what the old one played will not echo on it (nor be learnt from while nothing plays)."""
        self._heard_frames = 0
        self._ratios.clear()
        self._far.clear()
        self._played.clear()

    @property
    def coupling(self) -> float:
        """Echo power over far end power, at most (0 dB until measured long enough)."""
        if self._heard_frames < self._learn_frames:
            return 1.0
        return max(max(self._ratios, default=0.0), 1e-6)

    @property
    def converged(self) -> bool:
        return (
            self._hold_frames == 0
            and self._active_frames >= MIN_ACTIVE_FRAMES
            and self._onset_frames >= ONSET_FRAMES
            and self._erle_db >= ERLE_CONVERGED_DB
        )


def _follow(erle_db: float, frame_erle_db: float, evidence: bool) -> float:
    """An attenuation estimate after one more frame: fast up on echo alone, slowly down (double talk
    under the evidence margin must not make a converged canceller look unconverged)."""
    rate = ERLE_SLOW if evidence else ERLE_FAST if frame_erle_db > erle_db else ERLE_FALL
    return erle_db + rate * (frame_erle_db - erle_db)


def frame_power(pcm: np.ndarray) -> float:
    """Mean square of int16 samples: the unit every level here is in."""
    x = pcm.astype(np.float32)
    return float(np.dot(x, x)) / len(x)


def loudest_frame_power(far: np.ndarray) -> float:
    """Mean square (int16 scale) of the loudest 10 ms frame of float far end samples."""
    n = len(far) // MIC_FRAME_SAMPLES * MIC_FRAME_SAMPLES
    frames = far[:n].reshape(-1, MIC_FRAME_SAMPLES) * 32768.0
    return float(np.max(np.mean(frames * frames, axis=1)))
