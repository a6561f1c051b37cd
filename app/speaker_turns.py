"""The app's turn ids on the speaker, where a spoken notice (negative id, app/realtime_notice.py)
plays between a reply's words before its tool calls and the rest of that reply.

The player takes turn ids in rising order only (a lower one is a stale reply and is dropped), so
a notice played inside turn N would leave N's continuation stale. Between the app and the player
this maps ids: a notice takes the next player id, and the reply it interrupted goes on under a
new, higher one; every later turn is shifted past it. The session, the engine client and the
barge-in events keep the app's ids (`app_event` maps the player's `BargeIn` back, with what was
heard of the turn under all its ids). Without notices every id maps to itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from events import AudioChunk, BargeIn

NOTICE_WAIT_S = 0.01  # how often a notice looks whether the reply before it has played out


class SpeakerTurns:
    """A player (its `start_turn`, `write`, `finish_turn`, `flush`, `speaking_turn`,
    `played_samples`) under the app's turn ids; everything else is the player's own."""

    def __init__(self, player: Any) -> None:
        self.inner = player
        self._lock = threading.Lock()
        self._ids: dict[int, list[int]] = {}  # app id -> its player ids, in order
        self._app: dict[int, int] = {}  # player id -> app id
        self._offset = 0  # player id - app id for a reply not yet on the speaker
        self._top: int | None = None  # the highest player id handed out
        self._latest = 0  # the latest reply's app id
        self._cut: set[int] = set()  # notices flushed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _player_id(self, turn_id: int) -> int | None:
        """The player id `turn_id` is written under now (None: a stale reply never on the speaker)."""
        with self._lock:
            ids = self._ids.get(turn_id)
            top = self._top
            if turn_id < 0:  # a notice: after everything so far
                if ids is None:
                    ids = self._ids[turn_id] = [(top + 1) if top is not None else 0]
                    self._app[ids[0]] = turn_id
                    self._top = ids[0]
                return ids[-1]
            if turn_id < self._latest:
                return ids[-1] if ids else None
            self._latest = turn_id
            if ids and ids[-1] == top:
                return top  # it is the last on the speaker
            wanted = ids[-1] if ids else turn_id + self._offset
            if top is not None and wanted <= top:
                wanted = top + 1  # a notice came after it, or took its id: it goes on above
            if not ids or ids[-1] != wanted:
                self._ids.setdefault(turn_id, []).append(wanted)
                self._app[wanted] = turn_id
                self._offset = wanted - turn_id
                for old in [t for t in self._ids if 0 <= t < turn_id - 16]:
                    for player_id in self._ids.pop(old):
                        self._app.pop(player_id, None)
            self._top = wanted if top is None else max(top, wanted)
            return wanted

    def _earlier(self, turn_id: int, player_id: int) -> int:
        """Samples heard of `turn_id` under the player ids before `player_id`."""
        with self._lock:
            ids = list(self._ids.get(turn_id, []))
        return sum(int(self.inner.played_samples(p)) for p in ids if p < player_id)

    def start_turn(self, turn_id: int) -> None:
        player_id = self._player_id(turn_id)
        if player_id is not None:
            self.inner.start_turn(player_id)

    def write(self, chunk: AudioChunk) -> bool:
        """Write `chunk` under its player id; a notice waits (on the writer's thread) until the reply
        before it has played out, and is dropped when it was flushed meanwhile."""
        if chunk.turn_id < 0:
            while self._reply_playing() and chunk.turn_id not in self._cut:
                time.sleep(NOTICE_WAIT_S)
            if chunk.turn_id in self._cut:
                return False
        player_id = self._player_id(chunk.turn_id)
        if player_id is None:
            return False
        return bool(self.inner.write(replace(chunk, turn_id=player_id)))

    def _reply_playing(self) -> bool:
        player_id = self.inner.speaking_turn()
        return player_id is not None and self.app_id(player_id) >= 0

    def finish_turn(self, turn_id: int) -> None:
        with self._lock:
            ids = self._ids.get(turn_id)
        if ids:
            self.inner.finish_turn(ids[-1])

    def flush(self, turn_id: int | None = None) -> int:
        """Stop `turn_id` (default: what plays now); returns what was heard of it."""
        if turn_id is not None and turn_id < 0:
            self._cut = {t for t in self._cut if t > turn_id - 64} | {turn_id}
        if turn_id is None:
            player_id = self.inner.speaking_turn()
            if player_id is None:
                return int(self.inner.flush(None))
            turn_id = self.app_id(player_id)
        with self._lock:
            ids = list(self._ids.get(turn_id, []))
        if not ids:
            return 0
        return int(self.inner.flush(ids[-1])) + self._earlier(turn_id, ids[-1])

    def speaking_turn(self) -> int | None:
        player_id = self.inner.speaking_turn()
        return None if player_id is None else self.app_id(player_id)

    def played_samples(self, turn_id: int) -> int:
        with self._lock:
            ids = list(self._ids.get(turn_id, []))
        return sum(int(self.inner.played_samples(p)) for p in ids)

    def app_id(self, player_id: int) -> int:
        with self._lock:
            return self._app.get(player_id, player_id)

    def app_event(self, event: object) -> object:
        """A player's event with the app's turn id (a barge-in: and all that was heard of the turn)."""
        if not isinstance(event, BargeIn):
            return event
        turn_id = self.app_id(event.turn_id)
        heard = event.heard_samples + self._earlier(turn_id, event.turn_id)
        return replace(event, turn_id=turn_id, heard_samples=heard)


class TurnsInput:
    """The microphone chain with its barge-in events in the app's turn ids (`SpeakerTurns`);
    everything else, attributes set included, is the chain's own."""

    def __init__(self, chain: Any, speaker: SpeakerTurns) -> None:
        object.__setattr__(self, "chain", chain)
        object.__setattr__(self, "speaker", speaker)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.chain, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.chain, name, value)

    def start(self, on_event: Callable[[object], None]) -> None:
        self.chain.start(lambda event: on_event(self.speaker.app_event(event)))
