"""Echo cancellation: WebRTC's AEC3 (`livekit.rtc.AudioProcessingModule`) on 10 ms microphone frames.

The far end is what the player's callback actually played (`Player.far_end`, at the device rate),
resampled to 16 kHz and fed as the reverse stream before each microphone frame; the stream delay is
aligned by time stamps: for a microphone frame captured at t, the reverse stream gets what was being
heard at t (and `_LEAD_S` more), so the delay AEC3 has to find is the acoustic path plus that lead:
with a laptop's path of a millisecond, a few ms of error in the stamps would otherwise hand AEC3 the
far end after its echo, which no canceller can remove. With headphones there is no echo: turn it off.

Only time decides what is fed, never how much is waiting: when the audio thread falls behind, the far
end it has not read yet is still the reference for the frames it has not processed yet (skipping to
the present there would shift the delay by the lag, and AEC3 would re-converge while the echo went
through to barge-in). Far end heard more than `_STALE_S` before a frame is dropped, and when the
player's far end overflowed (nobody read it for `PlayerConfig.far_end_s`) its clock is unknown until the
next callback: that backlog is dropped whole. The player's callback writes silence there between
replies, so AEC3 stays converged from one reply to the next.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from audio_io.formats import MIC_FRAME_SAMPLES, MIC_RATE_HZ
from audio_io.ring_buffer import SampleRing

_STALE_S = 0.5  # far end heard this long before a microphone frame is skipped, not fed (AEC3 models less)
_LEAD_S = 0.03  # the far end goes in this far ahead of the frame: jitter in the stamps never makes it late
_MIC_FRAME_S = MIC_FRAME_SAMPLES / MIC_RATE_HZ


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
        self._chunk = np.zeros(0, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        if config.enabled:
            from livekit import rtc

            self._apm = rtc.AudioProcessingModule(
                echo_cancellation=True,
                noise_suppression=config.noise_suppression,
                high_pass_filter=config.high_pass_filter,
            )

    @property
    def delay_ms(self) -> int:
        return round(self.config.extra_delay_ms)

    def process(self, frame: np.ndarray, time_s: float | None = None) -> np.ndarray:
        """`frame`: 160 int16 samples at 16 kHz captured at `time_s` (perf_counter); returns a new array.

        With `time_s`, the far end is fed up to what was being heard at that time, so the alignment
        does not depend on when frames happen to be processed; without it, everything played so far.
        """
        if self._apm is None:
            return frame
        from livekit import rtc

        self._feed_far_end(rtc, time_s)
        self._apm.set_stream_delay_ms(self.delay_ms)
        near = rtc.AudioFrame(
            bytearray(np.ascontiguousarray(frame, dtype=np.int16).tobytes()),
            MIC_RATE_HZ,
            1,
            MIC_FRAME_SAMPLES,
        )
        self._apm.process_stream(near)
        return np.frombuffer(bytes(near.data), dtype=np.int16).copy()

    def _feed_far_end(self, rtc: Any, until_s: float | None) -> None:
        import soxr

        ring, rate = self._source.far_end, self._source.rate_hz
        if ring is not self._ring:  # first call, or the player reopened at another rate
            self._ring = ring
            self._resampler = soxr.ResampleStream(rate, MIC_RATE_HZ, 1, dtype="float32")
            self._chunk = np.zeros(max(1, rate // 10), dtype=np.float32)
            self._pending = np.zeros(0, dtype=np.float32)
        clock_s = self._source.far_end_clock_s
        if not math.isfinite(clock_s):  # not playing yet, or the far end overflowed: its past is unknown
            ring.skip_to(ring.write_pos)
            self._pending = self._pending[:0]
            return
        if until_s is not None:  # what was heard too long before this frame cannot echo in it: skip
            until_s += _LEAD_S
            stale = math.floor((until_s - _STALE_S - clock_s) * rate)
            if ring.read_pos < stale:
                ring.skip_to(stale)
                self._pending = self._pending[:0]
        while (n := ring.read_into(self._chunk)) > 0:
            resampled = self._resampler.resample_chunk(self._chunk[:n])
            self._pending = np.concatenate([self._pending, resampled])
        # Time at which pending[0] is heard: the ring's read position, less what is pending.
        pending_s = clock_s + ring.read_pos / rate - len(self._pending) / MIC_RATE_HZ
        fed = 0
        if until_s is not None and pending_s < until_s - _STALE_S:  # the microphone side skipped ahead
            fed = min(len(self._pending), math.ceil((until_s - _STALE_S - pending_s) * MIC_RATE_HZ))
            pending_s += fed / MIC_RATE_HZ
        while len(self._pending) - fed >= MIC_FRAME_SAMPLES:
            if until_s is not None and pending_s > until_s:
                break
            pending_s += _MIC_FRAME_S
            pcm = np.clip(self._pending[fed : fed + MIC_FRAME_SAMPLES] * 32768.0, -32768, 32767)
            fed += MIC_FRAME_SAMPLES
            self._apm.process_reverse_stream(
                rtc.AudioFrame(bytearray(pcm.astype(np.int16).tobytes()), MIC_RATE_HZ, 1, MIC_FRAME_SAMPLES)
            )
        self._pending = self._pending[fed:]
