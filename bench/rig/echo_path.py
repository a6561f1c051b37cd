"""The loudspeaker heard by the microphone: the speaker's monitor, delayed and scaled, into the mic."""

from __future__ import annotations

from typing import Any

import numpy as np

from audio_io.devices import STREAM_SETUP_LOCK
from bench.rig.pulse import MIC_FEED, SINK_RATE_HZ, SPEAKER_MONITOR, wait_flowing


class EchoPath:
    """Loudspeaker → microphone: records the speaker monitor, plays it into the mic `delay_ms` later.

    Two streams joined by a ring that holds `delay_ms` (plus at most a few blocks of jitter). The
    ring's level is enforced both ways. Too full: a PulseAudio record stream opened on a playing
    sink's monitor first delivers up to 2 s it buffered between opening and starting, and a plain
    queue (or a duplex stream, as this was) keeps that backlog for good, making the "40 ms" path
    about 2 s long. Dry (the recording late, or its sink gone): it plays silence until the ring holds
    `delay_ms` again; reading on from an empty ring made the 150 ms path about 30 ms for good.
    """

    def __init__(self, delay_ms: float, gain: float, rate_hz: int = SINK_RATE_HZ) -> None:
        self.rate_hz = rate_hz
        self._block = rate_hz // 100
        self._slack_n = 3 * self._block
        self.set_path(delay_ms, gain)
        self._jump_n = 0
        self._callbacks = 0
        self.moves = 0  # times the path moved by itself: a backlog trimmed, or silence played when dry
        self._input: Any = None
        self._output: Any = None
        self.reopen()

    def set_path(self, delay_ms: float, gain: float) -> None:
        """Change the path while it runs: a new ring primed with `delay_ms` of silence."""
        from audio_io.ring_buffer import SampleRing

        delay_n = int(self.rate_hz * delay_ms / 1000)
        ring = SampleRing(self.rate_hz * 4, np.float32)
        ring.write(np.zeros(delay_n, dtype=np.float32))
        self._delay_n, self._ring, self.gain = delay_n, ring, gain
        self._refilling = False

    def shorten(self, ms: float) -> None:
        """The path `ms` shorter from the next block on, no clock showing it: what a host dropping
        that much of the sound it holds (or a microphone dropping input) does to an echo."""
        self._jump_n = int(self.rate_hz * ms / 1000)

    def reopen(self) -> None:
        """Open (again) both streams: the speaker's monitor dies with its sink."""
        import sounddevice as sd

        self.close()
        rate_hz, block = self.rate_hz, self._block
        with STREAM_SETUP_LOCK:
            self._input = sd.InputStream(
                device=SPEAKER_MONITOR, samplerate=rate_hz, channels=1, dtype="float32", latency="low",
                blocksize=block, callback=self._record,
            )  # fmt: skip
            self._output = sd.OutputStream(
                device=MIC_FEED, samplerate=rate_hz, channels=1, dtype="float32", latency="low",
                blocksize=block, callback=self._play,
            )  # fmt: skip
            self._input.start()
            self._output.start()
        wait_flowing(lambda: self._callbacks)

    def _record(self, indata: np.ndarray, frames: int, t: Any, status: Any) -> None:
        self._ring.write(indata[:, 0] * self.gain)

    def _play(self, outdata: np.ndarray, frames: int, t: Any, status: Any) -> None:
        ring = self._ring
        if self._jump_n:
            self._delay_n -= self._jump_n
            ring.skip_to(ring.read_pos + self._jump_n)
            self._jump_n = 0
        if ring.available() > self._delay_n + self._slack_n:  # a backlog: back to the set delay
            ring.skip_to(ring.write_pos - self._delay_n)
            self.moves += 1
        if self._refilling and ring.available() < self._delay_n:
            outdata[:, 0] = 0.0
        else:
            self._refilling = False
            got = ring.read_into(outdata[:, 0])
            outdata[got:, 0] = 0.0
            if got < frames:  # dry: the recording is late; silence until the ring holds the delay again
                self._refilling = True
                self.moves += 1
        self._callbacks += 1

    def close(self) -> None:
        for stream in (self._input, self._output):
            if stream is not None:
                with STREAM_SETUP_LOCK:
                    stream.close(ignore_errors=True)
        self._input = self._output = None
