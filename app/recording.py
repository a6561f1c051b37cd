"""The audio of the latest turns, for export: both sides, bounded, appended by the engine client's
threads and read by the Qt thread."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from facts import SPEECH_OUT_RATE_HZ, to_float, to_int16


@dataclass
class TurnRecord:
    """The audio of one turn for export: the user's (16 kHz int16) and the assistant's (24 kHz int16)."""

    turn_id: int
    user_audio: np.ndarray | None = None
    reply_chunks: list[np.ndarray] = field(default_factory=list)
    heard_samples: int | None = None  # set when the reply was cut

    @property
    def samples(self) -> int:
        user = 0 if self.user_audio is None else int(self.user_audio.size) * 3 // 2
        return user + sum(int(c.size) for c in self.reply_chunks)

    def reply_audio(self) -> np.ndarray:
        """The reply as heard, float32 in [-1, 1]."""
        audio = np.concatenate(self.reply_chunks) if self.reply_chunks else np.zeros(0, np.int16)
        audio = audio if self.heard_samples is None else audio[: self.heard_samples]
        return to_float(audio)


class Recording:
    """The audio of the latest turns, for export: appended by the worker, read by the Qt thread.

    Bounded by `max_audio_s` (24 kHz-equivalent seconds, both sides together): the oldest turns
    leave first, so a conversation of any length holds a fixed amount of memory."""

    def __init__(self, max_audio_s: float = 1800.0) -> None:
        self._lock = threading.Lock()
        self._turns: dict[int, TurnRecord] = {}
        self._samples = 0
        self.max_samples = int(max_audio_s * SPEECH_OUT_RATE_HZ)

    def _turn(self, turn_id: int) -> TurnRecord:
        record = self._turns.get(turn_id)
        if record is None:
            record = self._turns[turn_id] = TurnRecord(turn_id)
        return record

    def _trim(self) -> None:
        while self._samples > self.max_samples and len(self._turns) > 1:
            oldest = self._turns.pop(min(self._turns))
            self._samples -= oldest.samples

    def user(self, turn_id: int, audio: np.ndarray | None) -> None:
        pcm = None if audio is None else _int16(audio)
        with self._lock:
            record = self._turn(turn_id)
            self._samples -= record.samples
            record.user_audio = pcm
            self._samples += record.samples
            self._trim()

    def reply(self, turn_id: int, pcm: np.ndarray) -> None:
        chunk = _int16(pcm)
        with self._lock:
            self._turn(turn_id).reply_chunks.append(chunk)
            self._samples += int(chunk.size)
            self._trim()

    def cut(self, turn_id: int, heard_samples: int) -> None:
        with self._lock:
            if turn_id in self._turns:
                self._turns[turn_id].heard_samples = heard_samples

    def clear(self) -> None:
        with self._lock:
            self._turns.clear()
            self._samples = 0

    @property
    def held_samples(self) -> int:
        return self._samples

    def turns(self) -> list[TurnRecord]:
        with self._lock:
            return [
                TurnRecord(t.turn_id, t.user_audio, list(t.reply_chunks), t.heard_samples)
                for _, t in sorted(self._turns.items())
            ]


def _int16(audio: np.ndarray) -> np.ndarray:
    return to_int16(audio).copy()
