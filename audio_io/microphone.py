"""The microphone: a PortAudio input stream delivering 16 kHz mono int16 frames of 10 ms to a queue.

The stream runs at 16 kHz where the device takes it (a sound server converts as it captures), else at
the device's own rate; its callback only copies into a preallocated ring. A worker thread resamples
(soxr, which passes 16 kHz through untouched) and cuts frames, each stamped with the
`time.perf_counter()` time its first sample reached the microphone. A lost device gives `DeviceLost`
and is reopened (`StreamKeeper`).

    mic = Microphone(MicrophoneConfig(device="USB"), on_event=print)
    mic.start()
    frame = mic.frames.get()  # MicFrame(pcm=int16[160], index, time_s)
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audio_io.device_probe import opens_in_child
from audio_io.devices import AudioDevice, stream_rate_hz
from audio_io.formats import MIC_FRAME_SAMPLES, MIC_RATE_HZ
from audio_io.ring_buffer import SampleRing
from audio_io.stream_clock import StreamClock
from audio_io.stream_keeper import EventSink, RetryConfig, StreamKeeper
from worker_thread import WorkerThread


@dataclass(frozen=True, slots=True)
class MicFrame:
    """10 ms of 16 kHz mono int16; `index` counts frames since start, `time_s` is on perf_counter."""

    pcm: np.ndarray
    index: int
    time_s: float


@dataclass(frozen=True, slots=True)
class MicrophoneConfig:
    device: str | None = None  # substring of a device name; None for the system default
    block_ms: int = 10
    latency: str | float = "low"  # PortAudio's suggested latency
    rate_hz: int | None = MIC_RATE_HZ  # asked of the device, else its own; None: its own (resampled here)
    ring_ms: int = 2_000
    queue_frames: int = 1_000  # 10 s; when nobody reads, the oldest frames are dropped
    retry: RetryConfig = field(default_factory=lambda: RetryConfig(restart_gap_s=None))


class Microphone:
    """Owns the input stream and the frame worker; `frames` is the queue consumers read."""

    def __init__(self, config: MicrophoneConfig | None = None, on_event: EventSink | None = None) -> None:
        self.config = config or MicrophoneConfig()
        self.frames: queue.Queue[MicFrame] = queue.Queue(maxsize=self.config.queue_frames)
        self.overflows = 0  # input overflows reported by PortAudio
        self.dropped_frames = 0  # frames dropped because the queue was full
        self._on_event: EventSink = on_event or (lambda event: None)
        self._ring: SampleRing | None = None
        self._callbacks = 0
        self._clock_s = float("inf")  # perf_counter time of the current ring's position 0
        self._rate_hz = 0.0
        self._latency_s = 0.0
        self._stream_generation = 0
        self._frame_worker = WorkerThread("audio-mic-frames")
        self._stop = self._frame_worker.stop_requested
        self._keeper = StreamKeeper(
            "input",
            self.config.device,
            self._open_stream,
            lambda: self._callbacks,
            self._emit,
            self.config.retry,
            probe=opens_in_child,
        )

    # -- public -----------------------------------------------------------------------------------

    @property
    def device(self) -> AudioDevice | None:
        return self._keeper.device

    @property
    def native_rate_hz(self) -> float:
        """The rate the input stream runs at (16 kHz unless the device refused it)."""
        return self._rate_hz

    @property
    def latency_s(self) -> float:
        return self._latency_s

    def start(self, wait_for_device: bool = False) -> None:
        """Open the device (raises `UnknownDeviceError` listing the devices, unless `wait_for_device`:
        see `StreamKeeper.start`) and start delivering frames."""
        self._keeper.start(wait_for_device)
        self._frame_worker.start(self._run)

    def stop(self) -> None:
        self._stop.set()
        self._keeper.stop()
        self._frame_worker.stop()

    def __enter__(self) -> Microphone:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- stream -----------------------------------------------------------------------------------

    def _progress(self) -> int:
        return self._callbacks

    def _emit(self, event: object) -> None:
        self._on_event(event)

    def _open_stream(self, device: AudioDevice, finished: Any) -> Any:
        import sounddevice as sd

        wanted = self.config.rate_hz or int(device.default_sample_rate_hz) or MIC_RATE_HZ
        rate = stream_rate_hz(device, "input", wanted)
        block = max(1, round(rate * self.config.block_ms / 1000))
        ring = SampleRing(int(rate * self.config.ring_ms / 1000), np.float32)
        clock = StreamClock()

        def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            if status.input_overflow:
                self.overflows += 1
            # perf_counter time of ring position 0, from when this block was captured (see StreamClock).
            now = time.perf_counter()
            captured = now - self._latency_s - frames / rate
            anchor = clock.update(now, captured - ring.write_pos / rate)
            if ring.write(indata[:, 0]) < frames:  # the worker fell 2 s behind: positions left time
                clock.reset()
            self._clock_s = anchor
            self._callbacks += 1

        stream = sd.InputStream(
            device=device.index,
            samplerate=rate,
            blocksize=block,
            channels=1,
            dtype="float32",
            latency=self.config.latency,
            callback=callback,
            finished_callback=finished,
        )
        self._ring, self._rate_hz, self._latency_s = ring, float(rate), float(stream.latency)
        self._clock_s = float("inf")
        self._stream_generation += 1
        return stream

    # -- worker -----------------------------------------------------------------------------------

    def _run(self) -> None:
        import soxr

        generation = 0  # no stream yet: a microphone waited for opens later (`_stream_generation` 1)
        resampler: Any = None
        ring: SampleRing | None = None
        rate = 0.0
        native_base = out_base = 0  # ring position and output sample count when `resampler` was made
        produced = 0  # 16 kHz samples produced since start, across streams
        index = 0
        pending = np.zeros(0, dtype=np.float32)
        chunk = np.zeros(0, dtype=np.float32)
        while not self._stop.wait(0.005):
            if generation != self._stream_generation:
                generation, ring, rate = self._stream_generation, self._ring, self._rate_hz
                resampler = soxr.ResampleStream(rate, MIC_RATE_HZ, 1, dtype="float32", quality="HQ")
                native_base, out_base = 0, produced + len(pending)
                chunk = np.zeros(max(1, int(rate * 0.1)), dtype=np.float32)
            if ring is None or resampler is None:
                continue
            while (n := ring.read_into(chunk)) > 0:
                resampled = resampler.resample_chunk(chunk[:n])
                pending = np.concatenate([pending, resampled]) if len(pending) else resampled
            while len(pending) >= MIC_FRAME_SAMPLES:
                pcm = np.clip(pending[:MIC_FRAME_SAMPLES] * 32768.0, -32768, 32767).astype(np.int16)
                pending = pending[MIC_FRAME_SAMPLES:]
                native_pos = native_base + (produced - out_base) * rate / MIC_RATE_HZ
                time_s = self._clock_s + native_pos / rate
                self._put(MicFrame(pcm=pcm, index=index, time_s=time_s))
                produced += MIC_FRAME_SAMPLES
                index += 1

    def _put(self, frame: MicFrame) -> None:
        while True:
            try:
                self.frames.put_nowait(frame)
                return
            except queue.Full:
                try:
                    self.frames.get_nowait()
                    self.dropped_frames += 1
                except queue.Empty:
                    pass
