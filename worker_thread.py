"""How the devices and the engine run threads. `WorkerThread`: one background loop (the camera's
reader, the microphone's frame worker, the audio loop, a stream's keeper), started once, told to stop
through the event its loop waits on, and joined. `Errands`: short calls that may block, kept to be
joined. `JobThread`: calls run in order on one thread (a Realtime connection's engine)."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class WorkerThread:
    name: str
    stop_requested: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self, loop: Callable[[], None]) -> None:
        """Run `loop` on a daemon thread (nothing if one runs); it returns once `stop_requested` is set."""
        if self.thread is not None:
            return
        self.stop_requested.clear()
        self.thread = threading.Thread(target=loop, name=self.name, daemon=True)
        self.thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self.stop_requested.set()
        if self.thread is not None:
            self.thread.join(timeout=timeout_s)
            self.thread = None


@dataclass
class Errands:
    """Calls that may block (a source's stop, a player's flush) run off the Qt thread, kept so that
    closing can wait for them."""

    name: str
    threads: list[threading.Thread] = field(default_factory=list)

    def run(self, call: Callable[..., object], *args: object) -> None:
        thread = threading.Thread(target=call, args=args, name=self.name, daemon=True)
        thread.start()
        self.threads = [t for t in self.threads if t.is_alive()] + [thread]

    def join(self, timeout_s: float = 1.0) -> None:
        for thread in self.threads:
            thread.join(timeout=timeout_s)


class JobThread:
    """Runs submitted callables one after another on one thread (the engine is not thread-safe)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._jobs.put(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:
                log.exception("job failed on %s", self._thread.name)
