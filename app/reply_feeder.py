"""Reply audio from the network to the speaker, on its own thread.

The player's ring buffer blocks its writer when full (playback paces it); the network reader must
never wait on that, or a long reply would stall the connection. So the reader hands chunks here
and this thread does the waiting. A cancelled turn's chunks are dropped, queued or not."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from events import AudioChunk, FirstAudio

log = logging.getLogger(__name__)


class ReplyFeeder:
    def __init__(self, report: Callable[[object], None]) -> None:
        self.speech: Any = None
        self._report = report  # gets `FirstAudio` when a reply's first audio is in the ring
        self._queue: queue.SimpleQueue[tuple[str, int, AudioChunk | None] | None] = queue.SimpleQueue()
        self._dropped: set[int] = set()
        self._started: set[int] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="reply-audio", daemon=True)
        self._thread.start()

    def start_turn(self, turn_id: int) -> None:
        self._queue.put(("start", turn_id, None))

    def write(self, chunk: AudioChunk) -> None:
        self._queue.put(("audio", chunk.turn_id, chunk))

    def finish_turn(self, turn_id: int) -> None:
        self._queue.put(("finish", turn_id, None))

    def drop(self, turn_id: int) -> None:
        """Forget turn `turn_id`'s audio, queued or to come (it was cancelled)."""
        with self._lock:
            self._dropped.add(turn_id)
            self._dropped = {t for t in self._dropped if t > turn_id - 64}

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(1.0)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            kind, turn_id, chunk = item
            speech = self.speech
            with self._lock:
                dropped = turn_id in self._dropped
            if speech is None or (dropped and kind != "finish"):
                continue
            try:
                if kind == "start":
                    speech.start_turn(turn_id)
                elif kind == "finish":
                    speech.finish_turn(turn_id)
                elif chunk is not None:
                    speech.write(chunk)
                    if turn_id not in self._started:
                        self._started = {t for t in self._started if t > turn_id - 64} | {turn_id}
                        self._report(FirstAudio(turn_id, time.perf_counter()))
            except Exception:
                log.exception("writing reply audio failed")
