"""Reading the conversation journals back: the list of past conversations, one conversation with
its media, and search over their words.

Reading never writes. What cannot be read is said, naming the file: a last line cut off by a crash
(`kill -9` while a record was written), a line that is not a record, a journal of a newer format
(its records are read as far as they look like ours, and it cannot be continued here). Journals
without a header are format 1 (the app before versioning) and may hold several conversations, one
after each `new_conversation` record; format 2 starts a file per conversation (`app/history_log.py`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from app.history_log import FORMAT_VERSION, HEADER_KIND, media_dir_of
from events import Message

FIRST_WORDS_CHARS = 80
SKIPPED_KINDS = {"new_conversation", "model_ready", "engine", "error", "continued"}  # ours, not shown


@dataclass
class Turn:
    """One exchange as the journal kept it."""

    turn_id: int
    typed: str = ""  # what the user typed ("" for a spoken turn)
    transcript: str = ""  # the user's words as the model heard them (spoken turns, when transcribed)
    audio_s: float = 0.0  # seconds of the user's speech
    reply: str | None = None  # None: the reply never finished
    interrupted: bool = False
    user_audio: Path | None = None  # 16 kHz WAV, when kept
    reply_audio: Path | None = None  # 24 kHz WAV of what was heard, when kept
    images: list[Path] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(
        default_factory=list
    )  # its tool_call records (name, arguments, result, said)
    start_s: float = 0.0  # unix time of its first record
    end_s: float = 0.0

    @property
    def user_text(self) -> str:
        """What the list, the reader and search show of the user's side."""
        if self.typed:
            return self.typed
        if self.transcript:
            return self.transcript
        return "(spoken)" if self.audio_s else "(image)" if self.images else ""


@dataclass(frozen=True)
class TurnMedia:
    user_audio: Path | None = None
    reply_audio: Path | None = None
    images: tuple[Path, ...] = ()


@dataclass(frozen=True)
class ConversationInfo:
    """One entry of the list: what it shows, and what search looks through."""

    path: Path
    part: int  # which conversation of the file (format 1 files may hold several)
    parts: int
    started_s: float  # unix time
    persona: str
    first_words: str
    turns: int
    duration_s: float
    audio_s: float
    format: int
    problems: tuple[str, ...] = ()
    words: str = ""  # everything said, casefolded, for search
    continues: str = ""  # "file#part" of the conversation this one continued
    continued: bool = False  # a later conversation continued this one (and holds it whole)

    @property
    def can_continue(self) -> bool:
        """A newer format's records may mean what this version does not know: read, not continued."""
        return self.format <= FORMAT_VERSION and self.turns > 0


@dataclass(frozen=True)
class Conversation:
    info: ConversationInfo
    turns: list[Turn]

    @property
    def messages(self) -> list[Message]:
        out: list[Message] = []
        for turn in self.turns:
            out.append(Message("user", turn.user_text, turn.turn_id, audio_s=turn.audio_s))
            if turn.reply is not None:
                out.append(Message("assistant", turn.reply, turn.turn_id, interrupted=turn.interrupted))
        return out

    @property
    def media(self) -> dict[int, TurnMedia]:
        """The media kept, by turn id (turns with none are left out)."""
        return {
            t.turn_id: TurnMedia(t.user_audio, t.reply_audio, tuple(t.images))
            for t in self.turns
            if t.user_audio or t.reply_audio or t.images
        }


@dataclass
class _Part:
    persona: str = ""
    continues: str = ""
    started_s: float = 0.0
    end_s: float = 0.0
    turns: dict[int, Turn] = field(default_factory=dict)


@dataclass
class _Read:
    path: Path
    format: int = 1
    parts: list[_Part] = field(default_factory=lambda: [_Part()])
    problems: list[str] = field(default_factory=list)
    not_understood: int = 0


@dataclass(frozen=True)
class Shelf:
    """Every past conversation found, newest first, and what could not be read."""

    conversations: list[ConversationInfo]
    problems: list[str]


def list_conversations(folder: Path, *, leave_out: Path | None = None) -> Shelf:
    """The conversations of every journal in `folder` (`leave_out`: the one being written)."""
    found: list[ConversationInfo] = []
    problems: list[str] = []
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        if leave_out is not None and path == leave_out:
            continue
        read = _read(path)
        infos = [_info(read, i) for i in range(len(read.parts))]
        with_turns = [i for i in infos if i.turns]
        found += with_turns or [i for i in infos[:1] if i.problems]  # nothing readable: still said
        problems += list(infos[0].problems)
    later = {i.continues for i in found}
    found = [replace(i, continued=f"{i.path.name}#{i.part}" in later) for i in found]
    found.sort(key=lambda i: (i.started_s, str(i.path), i.part), reverse=True)
    return Shelf(found, problems)


def load_conversation(info: ConversationInfo) -> Conversation:
    """One conversation, read again from its file (with what its list entry says it holds)."""
    read = _read(info.path)
    index = min(info.part, len(read.parts) - 1)
    fresh = _info(read, index)
    return Conversation(fresh, list(read.parts[index].turns.values()))


def search(conversations: list[ConversationInfo], query: str) -> list[ConversationInfo]:
    """The conversations holding every word of `query` (case-insensitive, in any order)."""
    words = query.casefold().split()
    return [c for c in conversations if all(w in c.words for w in words)]


def delete_conversation(info: ConversationInfo) -> None:
    """Remove the journal file and the media kept beside it (the caller has asked the user)."""
    media = media_dir_of(info.path)
    if media.is_dir():
        shutil.rmtree(media)
    info.path.unlink(missing_ok=True)


def _info(read: _Read, index: int) -> ConversationInfo:
    part = read.parts[index]
    turns = list(part.turns.values())
    said = [w for t in turns for w in (t.user_text, t.reply or "")]
    first = next((t.user_text for t in turns if t.user_text), "")
    start = turns[0].start_s if turns else part.started_s
    problems = list(read.problems)
    if read.not_understood:
        n = read.not_understood
        problems.append(f"{read.path.name}: {n} record{'s' if n != 1 else ''} of a newer kind not shown")
    return ConversationInfo(
        path=read.path,
        part=index,
        parts=sum(1 for p in read.parts if p.turns) or 1,
        started_s=start or part.started_s,
        persona=part.persona,
        first_words=first[:FIRST_WORDS_CHARS],
        turns=len(turns),
        duration_s=max(0.0, (part.end_s - start) if turns else 0.0),
        audio_s=sum(t.audio_s for t in turns),
        format=read.format,
        problems=tuple(problems),
        words=" ".join([part.persona, *said]).casefold(),
        continues=part.continues,
    )


def _read(path: Path) -> _Read:
    read = _Read(path)
    try:
        data = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as error:
        read.problems.append(f"{path.name} could not be read: {error.strerror or error}")
        return read
    lines = data.split("\n")
    torn = lines.pop()  # "" when the file ends with a whole line
    for number, line in enumerate(lines, 1):
        if line.strip():
            _take(read, _parse(read, line, f"line {number} is not a journal record; it was skipped"))
    if torn.strip():
        record = _parse(read, torn, "")
        if record is None:
            read.problems.append(
                f"{path.name}: its last line is cut off (the app stopped while writing it); "
                "the records before it are shown"
            )
        _take(read, record)
    read.parts = [p for p in read.parts if p.turns] or read.parts[-1:]
    return read


def _parse(read: _Read, line: str, complaint: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        if complaint:
            read.problems.append(f"{read.path.name}: {complaint}")
        return None
    return record


def _take(read: _Read, record: dict[str, Any] | None) -> None:
    """Fold one record into the conversation being read; records of unknown kinds are skipped."""
    if record is None:
        return
    kind, part = record.get("kind"), read.parts[-1]
    stamp = _number(record.get("time"))
    if kind == HEADER_KIND:
        _header(read, record)
        part.started_s = part.started_s or stamp
        return
    if stamp:
        part.started_s = part.started_s or stamp
        part.end_s = max(part.end_s, stamp)
    if kind == "new_conversation":
        if part.turns:
            part = _Part(started_s=stamp, end_s=stamp)
            read.parts.append(part)
        part.persona = str(record.get("persona") or "")
        return
    if kind == "continued":
        part.continues = f"{record.get('source')}#{record.get('part', 0)}"
        return
    if kind not in ("user", "assistant", "media", "transcript", "tool_call"):
        if read.format > FORMAT_VERSION and kind not in SKIPPED_KINDS:
            read.not_understood += 1
        return
    turn_id = record.get("turn_id")
    if not isinstance(turn_id, int) or not _fits(record):
        read.not_understood += 1 if read.format > FORMAT_VERSION else 0
        if read.format <= FORMAT_VERSION:
            read.problems.append(f"{read.path.name}: a {kind} record without a turn id was skipped")
        return
    if kind != "user" and turn_id not in part.turns:
        return  # its user turn was not kept (or it belongs to the conversation before)
    turn = part.turns.setdefault(turn_id, Turn(turn_id, start_s=stamp))
    turn.end_s = max(turn.end_s, stamp)
    if kind == "user":
        turn.typed, turn.audio_s = str(record.get("text") or ""), _number(record.get("audio_s"))
        turn.transcript = str(record.get("transcript") or turn.transcript)
    elif kind == "assistant":
        turn.reply, turn.interrupted = str(record.get("text") or ""), bool(record.get("interrupted"))
    elif kind == "transcript":
        turn.transcript = str(record.get("text") or "")
    elif kind == "tool_call":
        turn.calls.append(record)
    else:
        _media(read, turn, record)


def _header(read: _Read, record: dict[str, Any]) -> None:
    version = record.get("format")
    read.format = version if isinstance(version, int) and version > 0 else FORMAT_VERSION + 1
    if read.format > FORMAT_VERSION:
        read.problems.append(
            f"{read.path.name} was written by a newer Omni Desk (journal format {version}; this version "
            f"reads up to {FORMAT_VERSION}): what looks familiar is shown, and it cannot be continued here"
        )


def _fits(record: dict[str, Any]) -> bool:
    """Whether a record's fields have the types this version writes (a newer format may differ)."""
    text, audio_s, file = record.get("text", ""), record.get("audio_s", 0), record.get("file", "")
    return isinstance(text, str) and isinstance(audio_s, int | float) and isinstance(file, str)


def _media(read: _Read, turn: Turn, record: dict[str, Any]) -> None:
    name = str(record.get("file") or "")
    base = read.path.parent
    target = (base / name).resolve()
    inside = target.parent.parent == base.resolve() and target.parent.name.endswith(".media")
    if not name or not inside:
        read.problems.append(f"{read.path.name}: a media record names {name!r}, outside its folder; skipped")
        return
    if not target.is_file():
        read.problems.append(f"{read.path.name}: its media file {name} is missing")
        return
    role = record.get("role")
    if role == "user":
        turn.user_audio = target
    elif role == "reply":
        turn.reply_audio = target
    elif role == "image":
        turn.images.append(target)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
