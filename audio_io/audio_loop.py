"""The audio thread: microphone frames → echo canceller → barge-in monitor and turn detector → events.

A stage that loops over the microphone's queue until stopped; events go to `on_event` from this
thread (the app forwards them to the Qt thread). `on_frame` sees every cleaned frame (level meters).

    loop = AudioLoop(mic, TurnDetector(), on_event, echo=EchoCanceller(...), barge_in=BargeInMonitor(player))
    mic.start(); loop.start()
"""

from __future__ import annotations

import queue
from collections.abc import Callable

from audio_io.barge_in import BargeInMonitor
from audio_io.echo_canceller import EchoCanceller
from audio_io.microphone import MicFrame, Microphone
from audio_io.stream_keeper import EventSink
from audio_io.turn_detector import TurnDetector
from worker_thread import WorkerThread


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
            for event in self.process(frame):
                self._on_event(event)
