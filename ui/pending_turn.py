"""While the user speaks: how long the turn is so far, and that it is being understood meanwhile
(the engine prefills the turn as it arrives). A 10 Hz timer sets one label's text, nothing more."""

from __future__ import annotations

import time

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QWidget

TICK_MS = 100


class PendingTurnLabel(QLabel):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("pendingTurn")
        self.setToolTip("Your turn so far; the model takes it in while you speak")
        self.started_s: float | None = None
        self.understood = True
        self._timer = QTimer(self)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)
        self.hide()

    def start(self, started_s: float, understood: bool = True) -> None:
        """`started_s` on the `time.perf_counter()` clock (the audio layer's); `understood` says the
        model takes the turn in as it arrives (false while no model is loaded)."""
        self.started_s = started_s
        self.understood = understood
        self._tick()
        self.show()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        self.started_s = None
        self.hide()

    def _tick(self) -> None:
        if self.started_s is not None:
            elapsed = max(0.0, time.perf_counter() - self.started_s)
            tail = " · understood as you speak" if self.understood else ""
            self.setText(f"listening… {elapsed:.1f} s{tail}")
