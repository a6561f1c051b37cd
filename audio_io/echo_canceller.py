"""Echo cancellation: WebRTC's AEC3 (`livekit.rtc.AudioProcessingModule`) on 10 ms microphone frames.

The far end is what the player's callback actually played (`Player.far_end`, at the device rate),
resampled to 16 kHz and fed as the reverse stream, as a signal of time: before the microphone frame
captured at t, every 10 ms reverse frame up to what is heard at t (and `_LEAD_S` more) goes in, made of
the far end samples the player's clock places there and zeros where nothing was played. So the delay
AEC3 has to find is always the acoustic path plus that lead, one reverse frame goes in per microphone
frame, and when the player's clock re-anchors (a reopened stream, an underrun, a stall) the far end
moves with it at once instead of AEC3 having to find a new delay. A laptop's path is a millisecond;
the lead keeps a few ms of error in the stamps from handing AEC3 the far end after its echo.

Only time decides what is fed, never how much is waiting: when the audio thread falls behind, the far
end it has not read yet is still the reference for the frames it has not processed yet. Far end heard
more than `_STALE_S` before a frame is skipped. With headphones there is no echo: turn it off.

The path itself is measured too (`echo_delay`): a long one (a Bluetooth speaker's few hundred ms) is
taken off by feeding the far end that much later, so AEC3 only ever has to find a short delay.

`state` says what the canceller knows, for barge-in (`EchoState`): how loud an echo of what was just
played could be at most, and how much AEC3 has been seen to remove from it. Once it knows that
nothing played comes back (`EchoMeter.no_echo`: headphones), the microphone passes untouched: AEC3's
suppressor, unaware, removed a voice 10 dB under the reply whole. Another output device (headphones
unplugged, the speaker taking over) or one plugged back starts the learning again, with a new AEC3:
the old one trusted a filter fitted to the old stream and leaked the echo of the first reply after a
reload (4 to 19 dB off for most of its first second, on the rig). The same device plugged back keeps
its measured path (`EchoDelay.relearn`); reopened by the watchdog, it keeps AEC3 too.

`listen` is the frame barge-in listens to: once a linear filter of our own (`linear_echo`, on the
measured path) cancels well, its residual, which AEC3's suppressor has not ducked; else the cleaned
frame. What the turn and the model get is always the cleaned frame.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from audio_io.echo_delay import EchoDelay
from audio_io.echo_state import (
    EVIDENCE_MARGIN_DB,
    IDLE,
    MOSTLY_ECHO_MATCH,
    NO_ECHO_POWER,
    SHIFT_HOLD_S,
    STALL_HOLD_S,
    EchoMeter,
    EchoState,
    frame_power,
    loudest_frame_power,
)
from audio_io.formats import MIC_FRAME_SAMPLES, MIC_RATE_HZ
from audio_io.linear_echo import PRE_S, FarLine, LinearEcho
from audio_io.ring_buffer import SampleRing

_STALE_S = 0.5  # far end heard this long before a microphone frame is skipped, not fed (AEC3 models less)
_LEAD_S = 0.03  # the far end goes in this far ahead of the frame: jitter in the stamps never makes it late
_MIC_FRAME_S = MIC_FRAME_SAMPLES / MIC_RATE_HZ
_RESYNC_SAMPLES = 32  # 2 ms: the far end's place in time moved more than this, follow it (else keep going)
_CLOCK_JUMP_S = 0.02  # consecutive microphone frames this far from 10 ms apart: its clock re-anchored
_SHIFT_TRIAL_FRAMES = 200  # 2 s of far end
_SHIFT_MIN_ERLE_DB = 10.0
_WAIT_S = 0.1  # far end not written this long after it is heard: the player stalled, feed silence
_DROPOUT_ZEROS = MIC_FRAME_SAMPLES // 2  # exact zeros in a frame whose echo must be loud: sound lost
_DROPOUT_SUB = MIC_FRAME_SAMPLES // 2  # the far end's quietest 5 ms there still echoes above -60 dBFS


class FarEndSource(Protocol):
    """What `Player` offers the echo canceller."""

    far_end: SampleRing
    far_end_clock_s: float  # perf_counter time at which far_end position 0 is heard

    @property
    def rate_hz(self) -> int: ...

    @property
    def latency_s(self) -> float: ...


@dataclass(frozen=True, slots=True)
class EchoCancellerConfig:
    enabled: bool = True
    noise_suppression: bool = False
    high_pass_filter: bool = True
    extra_delay_ms: float = 0.0  # added to the streams' latencies (e.g. a known acoustic path)


class EchoCanceller:
    """`process(frame)` returns the microphone frame with the far end's echo removed."""

    def __init__(
        self, config: EchoCancellerConfig, far_end: FarEndSource, input_latency_s: float = 0.0
    ) -> None:
        self.config = config
        self._source = far_end
        self.input_latency_s = input_latency_s
        self._apm: Any = None
        self._ring: SampleRing | None = None
        self._resampler: Any = None
        self._resampled_from = self._resampled = 0  # ring position the resampler began at, samples out
        self._chunk = np.zeros(0, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)  # far end at 16 kHz, read from the ring, not fed
        self._render_s = math.nan  # when the next reverse frame is heard
        self._ahead_s = 0.0  # `EchoDelay.ahead_s` as far as it is applied yet
        self._frames = 0
        self._time_base_s = math.nan
        self.meter = EchoMeter()
        self.delay = EchoDelay()
        self.linear = LinearEcho()
        self._far_line = FarLine()
        self._linear_path_s = math.nan
        self.listen = np.zeros(MIC_FRAME_SAMPLES, np.int16)
        self._shift_s, self._shift_frames, self._shift_resets = 0.0, 0, 0
        self._device: object = None
        self._gaps = 0
        self._returns = 0
        self.dropouts = 0  # frames that lost sound on the way in (`_dropped_out`)
        if config.enabled:
            self._apm = self._new_apm()

    def _new_apm(self) -> Any:
        """An AEC3 that knows nothing yet: it suppresses hard until its filter converges."""
        from livekit import rtc

        return rtc.AudioProcessingModule(
            echo_cancellation=True,
            noise_suppression=self.config.noise_suppression,
            high_pass_filter=self.config.high_pass_filter,
        )

    def fresh(self) -> EchoCanceller:
        """A new canceller on the same far end and settings, learning from nothing (this one failed)."""
        return type(self)(self.config, self._source, self.input_latency_s)

    @property
    def delay_ms(self) -> int:
        return round(self.config.extra_delay_ms)

    @property
    def state(self) -> EchoState:
        """What is known of the echo in the last processed frame (see `echo_state`)."""
        return self.meter.state if self._apm is not None else IDLE

    def process(self, frame: np.ndarray, time_s: float | None = None) -> np.ndarray:
        """`frame`: 160 int16 samples at 16 kHz captured at `time_s` (perf_counter); returns a new array.

        With `time_s`, the far end is fed up to what was being heard at that time, so the alignment
        does not depend on when frames happen to be processed; without it, everything played so far.
        """
        if self._apm is None:
            self.listen = frame
            return frame
        from livekit import rtc

        if time_s is None:
            self._feed_all(rtc)
        else:
            self._frames += 1
            base = time_s - self._frames * _MIC_FRAME_S  # steady while the microphone's clock is
            if not math.isfinite(self._time_base_s):
                self._time_base_s = base
            elif abs(base - self._time_base_s) > _CLOCK_JUMP_S:
                self.meter.restart()  # it moved (at once or step by step): the echo did too
                self.delay.reset()
                self._time_base_s = base
            self._feed_until(rtc, time_s + _LEAD_S - self.delay.shift_s)
        self._apm.set_stream_delay_ms(self.delay_ms)
        raw = np.ascontiguousarray(frame, dtype=np.int16)
        near = rtc.AudioFrame(bytearray(raw.tobytes()), MIC_RATE_HZ, 1, MIC_FRAME_SAMPLES)
        self._apm.process_stream(near)
        cleaned = np.frombuffer(bytes(near.data), dtype=np.int16).copy()
        no_echo = self.meter.no_echo
        if no_echo:  # AEC3's suppressor would still eat a voice softer than the far end: pass it
            cleaned = raw.copy()
        raw_power = frame_power(raw)
        if time_s is not None and self._dropped_out(raw):
            self._moved_unseen(lost_sound=True)
            self.dropouts += 1
        state = self.meter.frame(raw_power, frame_power(cleaned))
        self.listen = cleaned
        if time_s is not None:
            linear = None if no_echo else self._linear_residual(raw)
            if linear is not None:
                linear_power = frame_power(linear)
                state = self.meter.linear(linear_power)
                if self.meter.linear_converged:
                    self.listen = np.clip(linear, -32768, 32767).astype(np.int16)
            # Only what can be echo is timed: not a voice, not the room once the far end is quiet.
            voice = state.far_active and state.near_evidence_db >= EVIDENCE_MARGIN_DB
            # Not on a voice, nor where the far end missed the echo (the estimate only added to it).
            quiet = state.far_active and not (voice or self.meter.linear_voice)
            if linear is not None and quiet and linear_power <= raw_power:
                self.linear.adapt()
            self.delay.mic(time_s, raw, timed=(state.far_active and not voice) or no_echo)
            if voice and not no_echo:
                state = self.meter.matched(self.delay.match())
            # Where the echo is held is checked on the echo alone: a voice over it moved the peak.
            self.delay.check_hold(state.far_active and (not voice or state.far_match >= MOSTLY_ECHO_MATCH))
            if self.delay.unmoved:
                self.meter.unmoved()
            if self.meter.linear_lost:
                self._restart_linear()
            self._check_shift(state)
        return cleaned

    def _linear_residual(self, raw: np.ndarray) -> np.ndarray | None:
        """The microphone less the linear filter's echo estimate, placed on the measured path (None
        while there is no measure, or the far end it needs was not fed)."""
        path_s = self.delay.delay_s
        if path_s != self._linear_path_s and not (math.isnan(path_s) and math.isnan(self._linear_path_s)):
            self._restart_linear()  # measured anew, or the clocks moved (no measure): learn it again
            self._linear_path_s = path_s
        if not math.isfinite(path_s):
            return None
        frame_s = self._time_base_s + self._frames * _MIC_FRAME_S
        far = self._far_line.block(frame_s - path_s + PRE_S)
        if far is None:
            return None
        return self.linear.residual(far, raw.astype(np.float64))

    def _moved_unseen(self, lost_sound: bool = False) -> None:
        """The echo may have moved where no clock shows (a stall, sound lost on the way in): no credit
        for `STALL_HOLD_S` (lost sound: unless found where it was), the path measured from now on."""
        self.meter.restart(STALL_HOLD_S, unless_unmoved=lost_sound)
        self.delay.reset()

    def _dropped_out(self, raw: np.ndarray) -> bool:
        """Sound lost on the way in: digital silence in a frame that the far end, loud throughout
        around the measured path, must echo in. A host or capture that fell behind filled it, and what
        followed came that much later: on the rig under load AEC3 then lost the echo, leaked it whole,
        and the reply paused for it. No microphone's own signal holds 5 ms of exact zeros there."""
        path_s = self.delay.delay_s
        if np.count_nonzero(raw == 0) < _DROPOUT_ZEROS or not math.isfinite(path_s):
            return False
        frame_s = self._time_base_s + self._frames * _MIC_FRAME_S
        far = self._far_line.block(
            frame_s - path_s - PRE_S, MIC_FRAME_SAMPLES + 2 * round(PRE_S * MIC_RATE_HZ)
        )
        if far is None:
            return False
        quietest = float(np.min(np.mean(far.reshape(-1, _DROPOUT_SUB) ** 2, axis=1)))
        return self.meter.coupling * quietest > NO_ECHO_POWER

    def _restart_linear(self) -> None:
        self.linear.reset()
        self.meter.linear_moved()

    def _check_shift(self, state: EchoState) -> None:
        """A new shift shows AEC3 the echo elsewhere: the canceller proves itself again. One AEC3 does
        not converge with in `_SHIFT_TRIAL_FRAMES` of far end, from when it was set or the clocks last
        moved (that restarts what AEC3 is judged on), was a wrong measure: back to feeding as heard."""
        if self.delay.shift_s != self._shift_s:  # AEC3 sees the echo jump: it has to be proven anew
            self.meter.restart(SHIFT_HOLD_S)
        if self.delay.shift_s != self._shift_s or self.delay.resets != self._shift_resets:
            self._shift_s, self._shift_frames = self.delay.shift_s, 0
            self._shift_resets = self.delay.resets
        if self._shift_s == 0.0 or not state.far_active:
            return
        self._shift_frames += 1
        if self._shift_frames >= _SHIFT_TRIAL_FRAMES and state.erle_db < _SHIFT_MIN_ERLE_DB:
            self.delay.drop_shift()

    def _read_ring(self) -> float:
        """Move what the player wrote into `_pending`; return when `_pending[0]` is heard (or nan).

        Times come from the resampler's output count, not the ring's read position: the resampler
        holds back a few ms, and counting its input would place every frame that much late.
        """
        ring, rate = self._source.far_end, self._source.rate_hz
        if ring is not self._ring:  # first call, or the player reopened at another rate
            self._ring = ring
            self._chunk = np.zeros(max(1, rate // 10), dtype=np.float32)
            self._restart_resampler(ring.read_pos)
        gaps = getattr(self._source, "far_end_gaps", 0)
        if gaps != self._gaps:
            self._moved_unseen()  # the output stalled
            self._gaps = gaps
        device = getattr(self._source, "device", None)
        returns = getattr(self._source, "device_returns", 0)
        if returns != self._returns:  # plugged back: what the lost stream left unplayed will never echo
            ring.skip_to(ring.write_pos)
            self._restart_resampler(ring.read_pos)
        if returns != self._returns or (device != self._device and self._device is not None):
            self.meter.relearn()  # another loudspeaker, or one plugged back: its path is measured afresh
            same = getattr(device, "name", device) == getattr(self._device, "name", self._device)
            self.delay.relearn(same_path=returns != self._returns and same)
            self._apm = self._new_apm()
        self._device, self._returns = device, returns
        clock_s = self._source.far_end_clock_s
        if self.meter.clock(clock_s):
            self.delay.reset()
        if not math.isfinite(clock_s):  # not playing yet, or the far end overflowed: its past is unknown
            ring.skip_to(ring.write_pos)
            self._restart_resampler(ring.read_pos)
            return math.nan
        if math.isfinite(self._render_s):  # what was heard before the next reverse frame is of no use
            needed = math.floor((self._render_s + self._ahead_s - clock_s) * rate)
            if ring.read_pos < needed - rate // 10:
                ring.skip_to(needed)
                self._restart_resampler(ring.read_pos)
        while (n := ring.read_into(self._chunk)) > 0:
            resampled = self._resampler.resample_chunk(self._chunk[:n])
            if len(resampled) >= MIC_FRAME_SAMPLES:
                self.meter.played(time.perf_counter(), loudest_frame_power(resampled))
            self._resampled += len(resampled)
            self._pending = np.concatenate([self._pending, resampled])
        return clock_s + self._resampled_from / rate + (self._resampled - len(self._pending)) / MIC_RATE_HZ

    def _restart_resampler(self, position: int) -> None:
        import soxr

        self._resampler = soxr.ResampleStream(self._source.rate_hz, MIC_RATE_HZ, 1, dtype="float32")
        self._resampled_from, self._resampled = position, 0
        self._pending = self._pending[:0]

    def _feed_until(self, rtc: Any, until_s: float) -> None:
        """Reverse frames up to what is heard at `until_s`, one frame per 10 ms of time; each made of
        what is heard `EchoDelay.ahead_s` after it (the echo moved that far from its clock's place)."""
        if not math.isfinite(self._render_s) or until_s - self._render_s > _STALE_S:
            self._render_s = until_s - _MIC_FRAME_S  # first frame, or the microphone side skipped ahead
        pending_s = self._read_ring()
        wanted = round((self.delay.ahead_s - self._ahead_s) * MIC_RATE_HZ)
        if wanted and math.isfinite(pending_s):  # as far as it is read yet; the rest next time
            moved = self._move_ahead(wanted, self._render_s + self._ahead_s)
            self._ahead_s += moved / MIC_RATE_HZ
            pending_s += moved / MIC_RATE_HZ
        ahead_s = self._ahead_s
        while self._render_s <= until_s:
            heard_s = self._render_s + ahead_s
            if math.isfinite(pending_s):
                offset = round((heard_s - pending_s) * MIC_RATE_HZ)
                if offset > _RESYNC_SAMPLES:  # heard before this frame: drop
                    self._pending = self._pending[offset:]
                elif offset < -_RESYNC_SAMPLES:  # nothing was played then: silence
                    self._pending = np.concatenate([np.zeros(-offset, np.float32), self._pending])
                pending_s = heard_s
            if len(self._pending) < MIC_FRAME_SAMPLES and until_s - self._render_s < _WAIT_S:
                break  # not written yet: it will be, a callback from now
            frame = self._pending[:MIC_FRAME_SAMPLES]
            self._pending = self._pending[MIC_FRAME_SAMPLES:]
            if len(frame) < MIC_FRAME_SAMPLES:  # the player stalled
                frame = np.concatenate([frame, np.zeros(MIC_FRAME_SAMPLES - len(frame), np.float32)])
            self._record(heard_s, self._reverse(rtc, frame))
            self._render_s += _MIC_FRAME_S
            pending_s += _MIC_FRAME_S

    def _move_ahead(self, n: int, fed_s: float) -> int:
        """Feed the far end `n` samples further ahead of its clock (behind when negative), as far as
        it is read yet, with the stream fed so far ending at `fed_s`; returns how many moved. What
        AEC3 skips still goes on the record of what was played (`EchoDelay`, the linear filter's
        line), and going back repeats what was played: a gap there made the microphone look unlike
        the far end on the rig, and barge-in paused the reply for its own echo."""
        if n < 0:
            back = self._far_line.last(-n)
            repeat = back / 32768.0 if back is not None else np.zeros(-n)
            self._pending = np.concatenate([repeat.astype(np.float32), self._pending])
            return n
        n = min(n, len(self._pending))
        if n:
            self._record(fed_s, _pcm(self._pending[:n]))
            self._pending = self._pending[n:]
        return n

    def _record(self, heard_s: float, pcm: np.ndarray) -> None:
        """Far end heard from `heard_s`, fed to AEC3 or skipped: what the path measure, the copy check
        and the linear filter compare the microphone with."""
        self.delay.far(heard_s, pcm)
        self._far_line.push(heard_s, pcm)

    def _feed_all(self, rtc: Any) -> None:
        """Everything played so far (no time stamps)."""
        self._read_ring()
        while len(self._pending) >= MIC_FRAME_SAMPLES:
            self._reverse(rtc, self._pending[:MIC_FRAME_SAMPLES])
            self._pending = self._pending[MIC_FRAME_SAMPLES:]

    def _reverse(self, rtc: Any, frame: np.ndarray) -> np.ndarray:
        pcm = _pcm(frame)
        self.meter.far_frame(frame_power(pcm))
        far = rtc.AudioFrame(bytearray(pcm.tobytes()), MIC_RATE_HZ, 1, MIC_FRAME_SAMPLES)
        self._apm.process_reverse_stream(far)
        return pcm


def _pcm(far: np.ndarray) -> np.ndarray:
    """Float far end samples as int16, as AEC3 and the records take them."""
    return np.clip(far * 32768.0, -32768, 32767).astype(np.int16)
