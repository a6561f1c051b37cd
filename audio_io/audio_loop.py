"""The audio thread: microphone frames → echo canceller → barge-in monitor and turn detector → events.

A stage that loops over the microphone's queue until stopped; events go to `on_event` from this
thread (the app forwards them to the Qt thread). `on_frame` sees every cleaned frame (level meters).
A frame a stage fails on (a bug, the echo canceller's native library) is dropped, not the thread:
the echo canceller starts afresh, and without it if the fresh one fails too; a `Problem` says so.

    loop = AudioLoop(mic, TurnDetector(), on_event, echo=EchoCanceller(...), barge_in=BargeInMonitor(player))
    mic.start(); loop.start()
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable

from audio_io.barge_in import BargeInMonitor
from audio_io.echo_canceller import EchoCanceller
from audio_io.microphone import MicFrame, Microphone
from audio_io.stream_keeper import EventSink
from audio_io.turn_detector import TurnDetector
from events import Problem
from worker_thread import WorkerThread

log = logging.getLogger(__name__)
REPORT_EVERY_S = 30.0  # a stage that keeps failing is logged and reported at most this often


class AudioLoop:
    def __init__(
        self,
        microphone: Microphone,
        turns: TurnDetector,
        on_event: EventSink,
        *,
        echo: EchoCanceller | None = None,
        barge_in: BargeInMonitor | None = None,
        on_frame: Callable[[MicFrame], None] | None = None,
    ) -> None:
        self.microphone = microphone
        self.turns = turns
        self.echo = echo
        self.barge_in = barge_in
        self._on_event = on_event
        self._on_frame = on_frame
        self._worker = WorkerThread("audio-loop")
        self._stop = self._worker.stop_requested
        self.failures = 0
        self._failed_last = False  # the previous frame failed too
        self._reported_s = -REPORT_EVERY_S

    def start(self) -> None:
        self._worker.start(self._run)

    def stop(self) -> None:
        self._worker.stop()

    def __enter__(self) -> AudioLoop:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def process(self, frame: MicFrame) -> list[object]:
        """One frame through every stage; the thread calls this, and so can a test."""
        if self.echo is not None:
            frame = MicFrame(self.echo.process(frame.pcm, frame.time_s), frame.index, frame.time_s)
        if self._on_frame is not None:
            self._on_frame(frame)
        events: list[object] = []
        if self.barge_in is not None:
            if self.echo is None:
                events += self.barge_in.process(frame)
            else:  # what the canceller says barge-in should hear (`EchoCanceller.listen`)
                heard = MicFrame(self.echo.listen, frame.index, frame.time_s)
                events += self.barge_in.process(heard, self.echo.state)
        events += self.turns.process(frame)
        return events

    def _run(self) -> None:
        frames = self.microphone.frames
        while not self._stop.is_set():
            try:
                frame = frames.get(timeout=0.05)
            except queue.Empty:
                continue
            try:
                events = self.process(frame)
            except Exception as error:  # listening must outlive any one frame
                self._recover(error)
                continue
            self._failed_last = False
            for event in events:
                self._on_event(event)

    def _recover(self, error: Exception) -> None:
        """After a failed frame: a fresh echo canceller (its state may be what failed), none when the
        fresh one failed as well; the first failure, and one per `REPORT_EVERY_S`, logged and reported."""
        self.failures += 1
        if self.echo is not None:
            self.echo = None if self._failed_last else _fresh(self.echo)
            what = "echo cancellation is off" if self.echo is None else "echo cancellation started afresh"
        else:
            what = "the frame was dropped"
        self._failed_last = True
        now = time.monotonic()
        if now - self._reported_s >= REPORT_EVERY_S:
            self._reported_s = now
            log.error("audio processing failed on a microphone frame; %s", what, exc_info=error)
            self._on_event(Problem(f"Audio processing failed ({type(error).__name__}: {error}); {what}."))


def _fresh(echo: EchoCanceller) -> EchoCanceller | None:
    try:
        return echo.fresh()
    except Exception:
        log.exception("a fresh echo canceller failed to start")
        return None
