"""Qt's signals as the app uses them (tens of thousands per conversation, from worker threads) keep
Python's reference counts whole: PySide6 6.12.0 lost a reference to True/False on every emit with
arguments and crashed the app ("bool_dealloc") a few thousand text deltas in."""

from __future__ import annotations

import sys
import threading
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot


class Source(QObject):
    text = Signal(int, str)
    stats = Signal(int, object)


class Sink(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    @Slot(int, str)
    def on_text(self, _turn: int, _text: str) -> None:
        self.count += 1

    @Slot(int, object)
    def on_stats(self, _turn: int, _stats: object) -> None:
        self.count += 1


def test_signals_from_a_worker_thread_keep_reference_counts(qtbot: Any) -> None:
    source, sink = Source(), Sink()
    source.text.connect(sink.on_text)
    source.stats.connect(sink.on_stats)
    before = sys.getrefcount(True), sys.getrefcount(False), sys.getrefcount(None)
    emits = 3000

    def work() -> None:
        for i in range(emits):
            source.text.emit(i, "x")
            source.stats.emit(i, None)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    qtbot.waitUntil(lambda: sink.count == 2 * emits, timeout=30_000)
    after = sys.getrefcount(True), sys.getrefcount(False), sys.getrefcount(None)
    assert all(abs(a - b) < 100 for a, b in zip(after, before, strict=True)), (before, after)
