"""The session's replies by turn id (Qt thread): the last id given, the reply being generated or
played, those still generating, those cut (anything of theirs arriving late is dropped), and
their timings."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from events import TurnLatency

KEPT_TURNS = 32


class LatencyBook:
    """The latest turns' timings, stamped as each reply goes (Qt thread)."""

    def __init__(self) -> None:
        self._turns: dict[int, TurnLatency] = {}

    def __contains__(self, turn_id: object) -> bool:
        return turn_id in self._turns

    def start(self, turn_id: int, end_of_speech_s: float) -> None:
        self._turns[turn_id] = TurnLatency(turn_id, end_of_speech_s)
        for old in [t for t in self._turns if t < turn_id - KEPT_TURNS]:
            del self._turns[old]

    def stamp(self, turn_id: int, **changes: Any) -> TurnLatency | None:
        current = self._turns.get(turn_id)
        if current is not None:
            current = self._turns[turn_id] = replace(current, **changes)
        return current

    def first_text(self, turn_id: int, now_s: float) -> bool:
        """Stamp the reply's first text; True only the first time."""
        current = self._turns.get(turn_id)
        if current is None or current.first_text_s is not None:
            return False
        self.stamp(turn_id, first_text_s=now_s)
        return True


@dataclass
class ReplyLedger:
    last_id: int = 0
    active: int | None = None  # the turn whose reply is being generated or played
    generating: set[int] = field(default_factory=set)
    cut: set[int] = field(default_factory=set)
    latency: LatencyBook = field(default_factory=LatencyBook)

    def begin(self, end_of_speech_s: float) -> int:
        """A new turn, active and generating from now; its latency counted from `end_of_speech_s`."""
        self.last_id += 1
        turn_id = self.active = self.last_id
        self.generating.add(turn_id)
        self.latency.start(turn_id, end_of_speech_s)
        self.cut = {t for t in self.cut if t >= turn_id - KEPT_TURNS}
        return turn_id

    def in_flight(self, turn_id: int | None) -> bool:
        return turn_id is not None and (turn_id == self.active or turn_id in self.generating)

    def mark_cut(self, turn_id: int) -> None:
        self.cut.add(turn_id)
        if turn_id == self.active:
            self.active = None

    def ended(self, turn_id: int) -> bool:
        """The turn's generation ended; whether it is the active one."""
        self.generating.discard(turn_id)
        return turn_id == self.active
