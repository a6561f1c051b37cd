"""Saying aloud that a tool still runs (`[tools] while_running = "voice"`): once a call of a round
has run STILL_RUNNING_AFTER_S, the engine is asked for a few words in the persona's voice, out of
the conversation (`EngineClient.say_notice`: an out-of-band response with audio), once per round of
calls; when the round's calls are all done, or the turn is cut, the notice is stopped wherever it
is (`cancel_notice`), and the reply goes on. The window shows "running…" either way. Qt thread."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer

from app.engine_client import EngineClient
from app.tool_config import STILL_RUNNING_AFTER_S
from events import ToolCallRequested


def notice_request(tool: str) -> str:
    """What the model is asked to say (it hears only this and the persona's system turn)."""
    return (
        f"You are running the tool {tool} for the user and it has not finished yet. Tell the user, "
        "in a few words, that you are still working on it. Say only that."
    )


class StillRunning(QObject):
    """Per turn: a timer from the round's first running call, and the notice said for the round."""

    def __init__(
        self,
        engine: EngineClient,
        mode: str,
        running: Callable[[int], bool],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.engine = engine
        self.mode = mode  # "voice" or "window"
        self.running = running  # whether a call of the turn still runs
        self._timers: dict[int, QTimer] = {}
        self._said: dict[int, int] = {}  # turn id -> its notice's key
        self._told: set[int] = set()  # turns whose round has had its notice
        self._keys = 0

    def started(self, call: ToolCallRequested) -> None:
        """A call began to run: the round's notice is due after a moment, unless it ends first."""
        turn_id = call.turn_id
        if self.mode != "voice" or turn_id in self._told or turn_id in self._timers:
            return
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.timeout.connect(lambda: self._due(turn_id, call.name))
        self._timers[turn_id] = timer
        timer.start(int(STILL_RUNNING_AFTER_S * 1000))

    def _due(self, turn_id: int, tool: str) -> None:
        self._timers.pop(turn_id, None)
        if not self.running(turn_id) or turn_id in self._told:
            return
        self._keys += 1
        self._said[turn_id] = self._keys
        self._told.add(turn_id)
        self.engine.say_notice(self._keys, notice_request(tool))

    def settled(self, turn_id: int) -> None:
        """No call of the turn runs any more: a notice not said yet is not, one being said stops."""
        if self.running(turn_id):
            return
        timer = self._timers.pop(turn_id, None)
        if timer is not None:
            timer.stop()
        key = self._said.pop(turn_id, None)
        if key is not None:
            self.engine.cancel_notice(key)

    def round_over(self, turn_id: int) -> None:
        """The round's results went back (or the turn was cut): a next round may have its notice."""
        self.settled(turn_id)
        self._told.discard(turn_id)
