"""A reply's audio on the speaker, as the session sees it: how much of a turn was heard, the rest
faded out off the Qt thread (a stuck device may hold `flush` for half a second), and when the
turn has played out."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Slot

from app.session_parts import Playback
from worker_thread import Errands

KEEP_ALL_SAMPLES = 1 << 40  # "heard everything": a typed conversation keeps the whole reply
DRAIN_CHECK_MS = 40


class ReplyAudio(QObject):
    """The session's speaker side. `watch(turn_id)` calls `played_out` once the player has moved
    past that turn (Qt thread)."""

    def __init__(
        self, playback: Playback | None, played_out: Callable[[], None], parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.playback = playback
        self._played_out = played_out
        self._watched: int | None = None
        self._flushes = Errands("playback-flush")
        self._timer = QTimer(self)
        self._timer.setInterval(DRAIN_CHECK_MS)
        self._timer.timeout.connect(self._check)

    def playing(self, turn_id: int | None) -> bool:
        return self.playback is not None and turn_id is not None and self.playback.speaking_turn() == turn_id

    def heard(self, turn_id: int) -> int:
        """Samples of the turn the user heard; all of it without a player."""
        return KEEP_ALL_SAMPLES if self.playback is None else self.playback.played_samples(turn_id)

    def flush(self, turn_id: int) -> None:
        """Fade out and drop the rest of the turn's audio without waiting on the audio callback here."""
        if self.playback is not None:
            self._flushes.run(self.playback.flush, turn_id)

    def watch(self, turn_id: int) -> None:
        self._watched = turn_id
        self._timer.start()

    def unwatch(self) -> None:
        self._timer.stop()

    def close(self, timeout_s: float = 1.0) -> None:
        self._timer.stop()
        self._flushes.join(timeout_s)

    @Slot()
    def _check(self) -> None:
        if not self.playing(self._watched):
            self._timer.stop()
            self._played_out()
