"""The conversation as the client keeps it: what the user said and what they heard of each reply.

A remote or restarted engine forgets; this copy is what the app shows, exports and replays into a
new engine (the newest exchanges first, within `REPLAY_AUDIO_S` of the user's audio), and what a
stateless server (vLLM-Omni's chat completions) is sent with every turn."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from events import Message
from model.media_input import MODEL_AUDIO_RATE_HZ

REPLAY_AUDIO_S = 600.0  # the user's audio replayed into a new engine; older turns go back as text only


@dataclass(frozen=True)
class Exchange:
    turn_id: int
    text: str = ""
    audio: np.ndarray | None = None  # 16 kHz mono, as the engine got it
    images: tuple[Any, ...] = ()
    reply: str | None = None  # None while the reply is being generated
    interrupted: bool = False
    transcript: str = ""  # the user's words of a spoken turn, as the engine heard them
    calls: str = ""  # the reply's tool calls as the model wrote them (model.tool_format.call_text)
    results: str = ""  # the tool-response turn that answered them
    said_before: int = 0  # characters of `reply` said before the calls

    def as_read(self) -> list[Exchange]:
        """The exchange as the model read it, for a new engine: with calls, the reply up to them
        and the calls, then the tool results as a turn of their own with the rest of the reply."""
        if not self.calls:
            return [self]
        reply = self.reply or ""
        first = replace(self, reply=reply[: self.said_before] + self.calls, calls="", results="")
        if not self.results:
            return [first]  # cut while they waited: the tool flow put their answer back on its own
        return [first, Exchange(self.turn_id, text=self.results, reply=reply[self.said_before :])]

    @property
    def audio_s(self) -> float:
        return 0.0 if self.audio is None else self.audio.size / MODEL_AUDIO_RATE_HZ

    def messages(self) -> list[Message]:
        label = self.text or self.transcript or ("(spoken)" if self.audio is not None else "(image)")
        user = Message("user", label, self.turn_id, audio_s=self.audio_s)
        if self.reply is None:
            return [user]
        return [user, Message("assistant", self.reply, self.turn_id, interrupted=self.interrupted)]


@dataclass
class ClientHistory:
    exchanges: list[Exchange] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def user(self, turn_id: int, text: str, audio: np.ndarray | None, images: tuple[Any, ...]) -> None:
        """A new turn (a turn sent again to a new engine replaces its first record)."""
        with self._lock:
            self.exchanges = [e for e in self.exchanges if e.turn_id != turn_id]
            self.exchanges.append(Exchange(turn_id, text, audio, images))

    def reply(self, turn_id: int, text: str, *, interrupted: bool = False) -> None:
        self._change(turn_id, reply=text, interrupted=interrupted)

    def called(self, turn_id: int, call: str, said: int) -> None:
        """A tool call of the reply to `turn_id`, made after `said` characters of it."""
        with self._lock:
            self.exchanges = [
                replace(e, calls=f"{e.calls}\n{call}" if e.calls else call, said_before=e.said_before or said)
                if e.turn_id == turn_id
                else e
                for e in self.exchanges
            ]

    def answered_calls(self, turn_id: int, results: str) -> None:
        self._change(turn_id, results=results)

    def transcribed(self, turn_id: int, transcript: str) -> None:
        self._change(turn_id, transcript=transcript)

    def cut(self, turn_id: int, kept: str) -> None:
        self._change(turn_id, reply=kept, interrupted=True)

    def drop(self, turn_id: int) -> None:
        with self._lock:
            self.exchanges = [e for e in self.exchanges if e.turn_id != turn_id]

    def clear(self) -> None:
        with self._lock:
            self.exchanges = []

    def restore(self, exchanges: list[Exchange]) -> None:
        """A past conversation continued (issue 16): its answered exchanges, kept as if they had
        happened here, so a crash restore replays them too."""
        with self._lock:
            ids = {e.turn_id for e in exchanges}
            kept = [e for e in self.exchanges if e.turn_id not in ids]
            self.exchanges = kept + [replace(e, reply=e.reply or "") for e in exchanges]

    def reply_text(self, turn_id: int) -> str:
        with self._lock:
            found = [e.reply for e in self.exchanges if e.turn_id == turn_id]
        return (found[0] or "") if found else ""

    def _change(self, turn_id: int, **changes: Any) -> None:
        with self._lock:
            self.exchanges = [replace(e, **changes) if e.turn_id == turn_id else e for e in self.exchanges]

    def messages(self) -> list[Message]:
        with self._lock:
            return [m for e in self.exchanges for m in e.messages()]

    def answered(self) -> list[Exchange]:
        """The exchanges with a reply, oldest first, the user's audio kept only for the newest ones
        (within REPLAY_AUDIO_S); the rest go back as their text."""
        with self._lock:
            done = [e for e in self.exchanges if e.reply is not None]
        kept: list[Exchange] = []
        audio_s = 0.0
        for exchange in reversed(done):
            audio_s += exchange.audio_s
            if exchange.audio is not None and audio_s > REPLAY_AUDIO_S:
                exchange = replace(exchange, audio=None, text=exchange.text or "(an earlier spoken turn)")
            kept.append(exchange)
        return kept[::-1]
