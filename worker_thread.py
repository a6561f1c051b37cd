"""How the devices run threads. `WorkerThread`: one background loop (the camera's reader, the
microphone's frame worker, the audio loop, a stream's keeper), started once, told to stop through the
event its loop waits on, and joined. `Errands`: short calls that may block, kept to be joined."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field


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
