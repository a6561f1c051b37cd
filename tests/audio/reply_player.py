"""A player in the middle of reply 1, for the barge-in monitor alone (no device): what the monitor did
to it, by frame."""

from __future__ import annotations


class RecordingPlayer:
    """Speaks turn 1 until flushed; `log` holds (frame, "flush" | "pause" | "resume" | "duck" | "full")."""

    def __init__(self) -> None:
        self.turn: int | None = 1
        self.frame = 0
        self.log: list[tuple[int, str]] = []

    def speaking_turn(self) -> int | None:
        return self.turn

    def flush(self, turn_id: int | None = None) -> int:
        self.log.append((self.frame, "flush"))
        self.turn = None
        return 0

    def set_gain(self, gain: float) -> None:
        self.log.append((self.frame, "duck" if gain < 1 else "full"))

    def pause(self) -> None:
        self.log.append((self.frame, "pause"))

    def resume(self) -> None:
        self.log.append((self.frame, "resume"))

    @property
    def flushes(self) -> int:
        return sum(action == "flush" for _, action in self.log)
