"""Playback of the assistant's speech: 24 kHz chunks into a preallocated ring, a callback that copies.

The engine side calls `start_turn`, `write(AudioChunk)` (blocks while the ring is full) and
`finish_turn`; barge-in calls `flush`, which fades out over a few ms and drops the rest. Chunks of a
turn older than the current one, or of a flushed turn, are dropped. `played_samples(turn_id)` says
how much of a turn the user heard (24 kHz samples, corrected by the output latency). Underruns (the
ring running dry inside an unfinished turn) are counted and faded, never fatal; a lost device gives
`DeviceLost` and is reopened. A host that takes blocks faster than it plays them gets silence past
real time (`pace`). What the callback plays is also copied to `far_end`, the echo canceller's reference.

A device lost mid-reply cuts the reply where the user stopped hearing it (`BargeIn` after the
`DeviceLost`: the app keeps what was heard); resuming would restart mid-sentence after a gap.

    player = Player(PlayerConfig(device=None), on_event=print)
    player.start()
    player.write(AudioChunk(turn_id=1, pcm=pcm, sample_rate=24_000, first_frame_index=0))
    player.finish_turn(1)
    heard = player.flush(1)  # on barge-in
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audio_io.device_probe import opens_in_child
from audio_io.devices import AudioDevice, stream_rate_hz
from audio_io.formats import PLAYBACK_RATE_HZ
from audio_io.pace import Pace
from audio_io.ring_buffer import SampleRing
from audio_io.stream_clock import StreamClock, output_delay_s
from audio_io.stream_keeper import EventSink, RetryConfig, StreamKeeper
from events import AudioChunk, BargeIn, DeviceLost


@dataclass(frozen=True, slots=True)
class PlayerConfig:
    device: str | None = None  # substring of a device name; None for the system default
    block_ms: int = 10
    latency: str | float = "low"  # PortAudio's suggested latency
    buffer_s: float = 120.0  # ring capacity: a whole reply generated faster than real time
    fade_ms: float = 5.0  # on flush, pause and underrun: no clicks
    flush_timeout_s: float = 0.5  # how long flush waits for the callback to take it
    far_end_s: float = 2.0
    retry: RetryConfig = field(default_factory=RetryConfig)


@dataclass(slots=True)
class _Turn:
    start: int  # ring positions, at the device rate
    end: int
    cut: int | None = None  # where a flush stopped it
    resampler: Any = None
    resampler_rate_hz: int = 0


class Player:
    """One output stream fed from a ring; safe to call from an engine thread and an audio thread."""

    def __init__(self, config: PlayerConfig | None = None, on_event: EventSink | None = None) -> None:
        self.config = config or PlayerConfig()
        self.underruns = 0  # the ring ran dry inside an unfinished turn
        self.device_underflows = 0  # PortAudio reported an output underflow
        self.dropped_chunks = 0  # chunks of stale or flushed turns
        self._on_event: EventSink = on_event or (lambda event: None)
        self._lock = threading.Lock()  # producer side only; never taken in the callback
        self._turns: dict[int, _Turn] = {}
        self._turn_id: int | None = None
        self._rate_hz = 0
        self._latency_s = 0.0
        self._ring = SampleRing(1)
        self.far_end = SampleRing(1)
        self._callbacks = 0
        # Shared with the callback: plain attributes, each written by one side.
        self._turn_open = False
        self._paused = False
        self._gain = self._gain_target = 1.0
        self._audible = False
        self._flush_seq = self._flush_ack = 0
        self._flush_pos = 0
        self._cut_pos = 0
        self.far_end_clock_s = math.inf  # perf_counter time at which far_end position 0 is heard
        self._clock = StreamClock(burst_s=0.75 * self.config.block_ms / 1000)
        self._dry_samples = 0  # silence output since the ring last ran dry: how far that drained the device
        self.pace = Pace()  # a host taking blocks faster than it plays them takes silence (`pace`)
        self._keeper = StreamKeeper(
            "output",
            self.config.device,
            self._open_stream,
            lambda: self._callbacks,
            self._emit,
            self.config.retry,
            probe=opens_in_child,
        )

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def device(self) -> AudioDevice | None:
        return self._keeper.device

    @property
    def rate_hz(self) -> int:
        """The device rate: of the ring and of `far_end`."""
        return self._rate_hz

    @property
    def latency_s(self) -> float:
        return self._latency_s

    @property
    def device_returns(self) -> int:  # a lost device back: its echo path may be another
        return self._keeper.returns

    @property
    def far_end_gaps(self) -> int:
        """Stalls of the output stream: the host may then play later than any clock says."""
        return self._clock.gaps

    def start(self, wait_for_device: bool = False) -> None:
        """Open the device (raises `UnknownDeviceError` listing the devices, unless `wait_for_device`:
        see `StreamKeeper.start`) and start the stream."""
        self._keeper.start(wait_for_device)

    def stop(self) -> None:
        self._keeper.stop()

    # -- engine side ------------------------------------------------------------------------------

    def start_turn(self, turn_id: int) -> None:
        """Make `turn_id` current; what is left of an earlier turn is flushed."""
        with self._lock:
            if self._turn_id is not None and turn_id < self._turn_id:
                return
            if self._turn_id == turn_id:
                return
        if self._turn_id is not None:
            self.flush(self._turn_id)
        with self._lock:
            pos = self._ring.write_pos
            self._turns[turn_id] = _Turn(start=pos, end=pos)
            for old in [t for t in self._turns if t < turn_id - 8]:
                del self._turns[old]
            self._turn_id = turn_id
            self._turn_open = True

    def write(self, chunk: AudioChunk) -> bool:
        """Queue a chunk (float32 mono); blocks while the ring is full. False when the turn is stale."""
        if self._turn_id is None or chunk.turn_id > self._turn_id:
            self.start_turn(chunk.turn_id)
        samples = self._to_device_rate(chunk) if self._rate_hz else None  # no speaker opened yet: dropped
        if samples is None:
            return False
        offset = 0
        while offset < len(samples):
            with self._lock:
                turn = self._turns.get(chunk.turn_id)
                if chunk.turn_id != self._turn_id or turn is None or turn.cut is not None:
                    self.dropped_chunks += 1
                    return False
                offset += self._ring.write(samples[offset:])
                turn.end = self._ring.write_pos
            if offset < len(samples):
                time.sleep(0.005)
        return True

    def finish_turn(self, turn_id: int) -> None:
        """All of the turn's audio was written: the ring draining is its end, not an underrun."""
        with self._lock:
            if turn_id == self._turn_id:
                self._turn_open = False

    # -- barge-in side ----------------------------------------------------------------------------

    def flush(self, turn_id: int | None = None) -> int:
        """Stop `turn_id` (default: the current turn) with a fade; return its heard samples (24 kHz)."""
        with self._lock:
            turn_id = self._turn_id if turn_id is None else turn_id
            turn = self._turns.get(turn_id) if turn_id is not None else None
            if turn_id is None or turn is None:
                return 0
            if turn.cut is not None or turn_id != self._turn_id:
                return self.played_samples(turn_id)
            self._turn_open = False
            self._flush_pos = self._ring.write_pos
            self._flush_seq += 1
            seq = self._flush_seq
        deadline = time.monotonic() + self.config.flush_timeout_s
        while self._flush_ack != seq and time.monotonic() < deadline:
            time.sleep(0.001)
        if self._flush_ack != seq:  # no callback is running: cut here
            self._cut_pos = self._ring.read_pos
            self._ring.skip_to(self._flush_pos)
            self._flush_ack = seq
        with self._lock:
            turn.cut = min(max(self._cut_pos, turn.start), turn.end)
        return self.played_samples(turn_id)

    def pause(self) -> None:
        """Fade out and hold the rest of the turn (false-interruption recovery)."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def set_gain(self, gain: float) -> None:
        """Duck (gain < 1) or restore (1.0); ramps over one block."""
        self._gain_target = float(min(max(gain, 0.0), 1.0))

    def speaking_turn(self) -> int | None:
        """The current turn while some of its audio is still to be heard, else None."""
        turn_id = self._turn_id
        turn = self._turns.get(turn_id) if turn_id is not None else None
        if turn is None or turn.cut is not None:
            return None
        if self._turn_open or self._heard_pos() < turn.end:
            return turn_id
        return None

    def played_samples(self, turn_id: int) -> int:
        """24 kHz samples of the turn the user heard: written to the device and past its latency."""
        turn = self._turns.get(turn_id)
        if turn is None:
            return 0
        if turn.cut is not None:
            played = turn.cut - turn.start  # what reached the device before the cut plays out
        else:
            played = min(self._heard_pos(), turn.end) - turn.start
        played = max(0, played)
        if self._rate_hz == PLAYBACK_RATE_HZ:
            return played
        return round(played * PLAYBACK_RATE_HZ / self._rate_hz) if self._rate_hz else 0

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until everything written has been heard (tests, benchmarks, quitting)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._ring.available() == 0 and self.speaking_turn() is None:
                return True
            time.sleep(0.005)
        return False

    # -- internals --------------------------------------------------------------------------------

    def _progress(self) -> int:
        return self._callbacks

    def _emit(self, event: object) -> None:
        cut = self._cut_lost_reply() if isinstance(event, DeviceLost) else None
        self._on_event(event)
        if cut is not None:
            self._on_event(cut)

    def _cut_lost_reply(self) -> BargeIn | None:
        """The device went away mid-reply: cut the reply where the user stopped hearing it, without
        waiting for a callback (a lost device gives none; a flush waiting on one left the next reply
        stuck). The first callback of the reopened stream drops the rest from the ring."""
        turn_id = self.speaking_turn()
        if turn_id is None:
            return None
        heard = self._heard_pos()
        with self._lock:
            turn = self._turns.get(turn_id)
            if turn is None or turn.cut is not None:
                return None
            self._turn_open = False
            turn.cut = min(max(heard, turn.start), turn.end)
            self._flush_pos = self._ring.write_pos
            self._audible = False
            self._flush_seq += 1
        return BargeIn(turn_id=turn_id, heard_samples=self.played_samples(turn_id), device_lost=True)

    def _heard_pos(self) -> int:
        """Ring position now leaving the device: what was read, less what is still in its buffer."""
        in_device = max(0, round(self._latency_s * self._rate_hz) - self._dry_samples)
        return self._ring.read_pos - in_device

    def _to_device_rate(self, chunk: AudioChunk) -> np.ndarray | None:
        pcm = np.asarray(chunk.pcm, dtype=np.float32).reshape(-1)
        if chunk.sample_rate == self._rate_hz:
            return pcm
        import soxr

        with self._lock:
            turn = self._turns.get(chunk.turn_id)
            if turn is None:
                return None
            if turn.resampler is None or turn.resampler_rate_hz != chunk.sample_rate:
                turn.resampler = soxr.ResampleStream(chunk.sample_rate, self._rate_hz, 1, dtype="float32")
                turn.resampler_rate_hz = chunk.sample_rate
            resampler = turn.resampler
        return np.asarray(resampler.resample_chunk(pcm), dtype=np.float32)

    def _open_stream(self, device: AudioDevice, finished: Any) -> Any:
        import sounddevice as sd

        rate = stream_rate_hz(device, "output", PLAYBACK_RATE_HZ)
        block = max(1, round(rate * self.config.block_ms / 1000))
        callback = self._make_callback(block, max(1, round(rate * self.config.fade_ms / 1000)))
        stream = sd.OutputStream(
            device=device.index,
            samplerate=rate,
            blocksize=block,
            channels=1,
            dtype="float32",
            latency=self.config.latency,
            callback=callback,
            finished_callback=finished,
        )
        self._clock.reset()  # a new stream has its own timeline, whatever its rate
        self.far_end_clock_s = math.inf
        if rate != self._rate_hz:  # first open, or a fallback device at another rate: queued audio is dropped
            with self._lock:
                self._ring = SampleRing(int(rate * self.config.buffer_s), np.float32)
                self.far_end = SampleRing(int(rate * self.config.far_end_s), np.float32)
                for turn in self._turns.values():
                    turn.start = turn.end = 0
                    turn.resampler = None
                self._rate_hz = rate
        self._latency_s = float(stream.latency)
        self.pace.reset(rate, self._latency_s)
        return stream

    def _make_callback(self, block: int, fade_n: int) -> Any:
        fade_in = np.linspace(0.0, 1.0, fade_n + 2, dtype=np.float32)[1:-1]
        fade_out = fade_in[::-1].copy()
        unit = (np.arange(1, block + 1, dtype=np.float32) / block).astype(np.float32)
        scratch = np.zeros(block, dtype=np.float32)

        def callback(outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            if status.output_underflow:
                self.device_underflows += 1
            out = outdata[:, 0]
            ring, far_end = self._ring, self.far_end
            got, now = 0, time.perf_counter()
            if self._flush_seq != self._flush_ack:
                seq, target = self._flush_seq, self._flush_pos
                if self._audible:
                    got = ring.read_into(out[: min(fade_n, max(0, target - ring.read_pos), frames)])
                    out[:got] *= fade_out[:got]
                    out[:got] *= self._gain
                self._cut_pos = ring.read_pos
                ring.skip_to(target)
                self._flush_ack = seq
                self._audible = False
            elif self._paused:
                if self._audible:
                    got = ring.read_into(out[: min(fade_n, frames)])
                    out[:got] *= fade_out[:got]
                    out[:got] *= self._gain
                self._audible = False
            elif self.pace.allows(now, frames, ring.available()):
                got = ring.read_into(out[:frames])
                self.pace.took(got)
                if got:
                    gain, target_gain = self._gain, self._gain_target
                    if gain != target_gain and got == block:
                        np.multiply(unit, target_gain - gain, out=scratch)
                        np.add(scratch, gain, out=scratch)
                        out[:got] *= scratch
                        self._gain = target_gain
                    elif gain != 1.0:
                        out[:got] *= gain
                    if not self._audible:
                        m = min(got, fade_n)
                        out[:m] *= fade_in[:m]
                    if got < frames:
                        m = min(got, fade_n)
                        out[got - m : got] *= fade_out[fade_n - m :]
                        if self._turn_open:
                            self.underruns += 1
                        self._audible = False
                    else:
                        self._audible = True
                else:
                    if self._audible and self._turn_open:
                        self.underruns += 1
                    self._audible = False
            else:
                self._audible = False
            out[got:] = 0.0
            self._dry_samples = 0 if got == frames else self._dry_samples + frames - got
            # far_end sample 0 is heard from when this block is (StreamClock)
            delay = output_delay_s(time_info, self._latency_s)
            estimate = now + (self._latency_s if delay is None else delay) - far_end.write_pos / self._rate_hz
            anchor = self._clock.update(now, estimate, timed=delay is not None)
            if far_end.write(out) == frames:
                self.far_end_clock_s = anchor
            else:  # nobody read it for far_end_s: its positions stopped following time; estimate afresh
                self._clock.reset()
                self.far_end_clock_s = math.inf
            self._callbacks += 1

        return callback
