"""The media of a conversation, kept beside its journal and read back.

`MediaKeeper` follows the session's events: when a turn's reply has ended (finished, or cut to what
was heard), the user's audio of that turn (16 kHz) and the reply as heard (24 kHz) go to the journal
(`HistoryLog.keep`, written on its thread), with the images the engine client kept of the turn.
`turn_records` reads a past conversation's kept audio back as the `TurnRecord`s that export and
playback take.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from app.history_log import HistoryLog, MediaItem
from app.journal import Turn
from app.recording import TurnRecord
from app.resume import read_audio
from events import ReplyTruncated, TurnFinished
from facts import SPEECH_IN_RATE_HZ, SPEECH_OUT_RATE_HZ, to_int16

log = logging.getLogger(__name__)

MIC_RATE_HZ = SPEECH_IN_RATE_HZ
REPLY_RATE_HZ = SPEECH_OUT_RATE_HZ


class MediaKeeper:
    """Keeps each finished turn's media once. `engine` is the session's engine client (its
    `recording`, and its `conversation` where the client keeps one, for the turn's images)."""

    def __init__(self, journal: HistoryLog, engine: Any) -> None:
        self.journal = journal
        self.engine = engine
        self._kept: set[int] = set()

    def on_event(self, event: object) -> None:
        match event:
            case TurnFinished(turn_id, stats) if not stats.cancelled:
                self.keep(turn_id)
            case ReplyTruncated(turn_id):
                self.keep(turn_id)

    def keep(self, turn_id: int) -> None:
        if turn_id in self._kept:
            return
        self._kept = {t for t in self._kept if t > turn_id - 64} | {turn_id}
        record = next((t for t in self.engine.recording.turns() if t.turn_id == turn_id), None)
        if record is not None and record.user_audio is not None and record.user_audio.size:
            self.journal.keep(MediaItem(turn_id, "user", audio=record.user_audio, rate_hz=MIC_RATE_HZ))
        if record is not None and record.reply_chunks:
            heard = record.reply_audio()
            if heard.size:
                self.journal.keep(MediaItem(turn_id, "reply", audio=heard, rate_hz=REPLY_RATE_HZ))
        for index, image in enumerate(self._images(turn_id)):
            self.journal.keep(MediaItem(turn_id, "image", image=np.asarray(image), index=index))

    def _images(self, turn_id: int) -> tuple[Any, ...]:
        conversation = getattr(self.engine, "conversation", None)  # the clients that keep a copy
        exchanges = getattr(conversation, "exchanges", [])
        found = [e.images for e in exchanges if e.turn_id == turn_id]
        return found[0] if found else ()


def turn_records(turns: Sequence[Turn]) -> list[TurnRecord]:
    """The kept audio of each turn as export and playback take it (int16; turns without audio left out)."""
    records = []
    for turn in turns:
        user = _pcm16(turn.user_audio, MIC_RATE_HZ)
        reply = _pcm16(turn.reply_audio, REPLY_RATE_HZ)
        if user is None and reply is None:
            continue
        records.append(TurnRecord(turn.turn_id, user, [reply] if reply is not None else []))
    return records


def _pcm16(path: Any, rate_hz: int) -> np.ndarray | None:
    if path is None:
        return None
    try:
        audio, rate = read_audio(path)
    except Exception as error:
        log.warning("the kept audio %s does not read: %s", path.name, error)
        return None
    if rate != rate_hz and audio.size:
        import soxr

        audio = soxr.resample(audio, rate, rate_hz)
    return to_int16(audio)
