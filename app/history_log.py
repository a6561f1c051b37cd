"""The conversation journal: one JSON line per finished turn, flushed and fsynced as it happens.

Appending whole lines means a crash (even `kill -9` in the middle of a turn) leaves every earlier
line intact; a torn last line is skipped on reading. Files live in `conversations/` of the user
data directory (`OMNIDESK_DATA_DIR` overrides it). The writing and the fsync (~100 ms on a slow
disk) happen on the journal's own thread: the window never waits on the disk.

Format (`FORMAT_VERSION`): the first line of a file is a header, `{"kind": "journal", "format": 2,
...}`; journals without one are format 1 (same records, no media). One file holds one conversation:
a `new_conversation` record after a turn starts a new file. A file is created exclusively (never
appended to by another run) and never rewritten. The media kept of a turn (the user's audio, the
reply as heard, images) are files in `<journal stem>.media/`, each written to a temporary name,
fsynced and renamed, then named by a `media` record: a file no record names is not part of the
conversation. The version is bumped only by a change an older reader would misread; new kinds of
records and new fields do not bump it (readers skip what they do not know).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.export import write_wav

log = logging.getLogger(__name__)

DATA_DIR_ENV = "OMNIDESK_DATA_DIR"
FORMAT_VERSION = 2
HEADER_KIND = "journal"
MEDIA_SUFFIX = ".media"
CONTENT_KINDS = ("user", "assistant")


def data_dir() -> Path:
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir("omnidesk"))


def conversations_dir() -> Path:
    return data_dir() / "conversations"


@dataclass(frozen=True)
class MediaItem:
    """A media file of one turn to keep: `audio` (int16 or float, mono) at `rate_hz`, an `image`
    ((h, w, 3) uint8 RGB), or `source`, a file kept by an earlier conversation (linked or copied)."""

    turn_id: int
    role: str  # "user" (the user's audio), "reply" (the reply as heard) or "image"
    audio: Any = None
    rate_hz: int = 0
    image: Any = None
    source: Path | None = None
    index: int = 0  # an image's place among the turn's images


class HistoryLog:
    """`write` returns at once; a failure (a full disk) goes to `on_error` with the reason."""

    def __init__(self, path: Path | None = None, on_error: Callable[[str], None] | None = None) -> None:
        self.path = path or conversations_dir() / time.strftime("%Y%m%d-%H%M%S.jsonl")
        self.on_error = on_error or (lambda message: log.warning("%s", message))
        self.on_new_file: Callable[[str], None] | None = None  # called on the journal's thread
        self._file: Any = None
        self._has_turns = False  # the open file holds a turn: a new conversation starts a new file
        self._records: queue.Queue[dict[str, Any] | MediaItem | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="journal", daemon=True)
        self._thread.start()

    def write(self, kind: str, **fields: Any) -> None:
        """Append one record, stamped now."""
        self._records.put({"kind": kind, "time": time.time(), "perf_s": time.perf_counter(), **fields})

    def keep(self, item: MediaItem) -> None:
        """Save a turn's media beside the journal and name it in a `media` record (on the journal's
        thread, like every write)."""
        self._records.put(item)

    def flush(self) -> None:
        """Wait until every record written so far is on disk."""
        self._records.join()

    def close(self) -> None:
        self._records.put(None)
        self._thread.join(5.0)

    @property
    def media_dir(self) -> Path:
        return media_dir_of(self.path)

    def _run(self) -> None:
        while True:
            record = self._records.get()
            try:
                if record is None:
                    if self._file is not None:
                        self._file.close()
                        self._file = None
                    return
                if isinstance(record, MediaItem):
                    self._append(self._save_media(record))
                else:
                    self._append(record)
            except (OSError, ValueError) as error:
                self.on_error(f"The conversation could not be saved to {self.path}: {error}")
            finally:
                self._records.task_done()

    def _append(self, record: dict[str, Any]) -> None:
        if record.get("kind") == "new_conversation" and self._has_turns:
            self._file.close()
            self._file = None
            self._has_turns = False
            self.path = self.path.with_name(time.strftime("%Y%m%d-%H%M%S.jsonl"))
        if self._file is None:
            self._open()
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        if record.get("kind") in CONTENT_KINDS:
            self._has_turns = True

    def _open(self) -> None:
        """Create the file (never an existing one: a name taken gets a suffix) with its header."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stem, n = self.path.stem, 1
        while True:
            try:
                self._file = open(self.path, "x", encoding="utf-8")  # noqa: SIM115 (kept open while the app runs)
                break
            except FileExistsError:
                n += 1
                self.path = self.path.with_name(f"{stem}-{n}.jsonl")
        header = {"kind": HEADER_KIND, "format": FORMAT_VERSION, "app": "omnidesk", "time": time.time()}
        self._file.write(json.dumps(header) + "\n")
        _fsync_dir(self.path.parent)
        if self.on_new_file is not None:
            self.on_new_file(str(self.path))

    def _save_media(self, item: MediaItem) -> dict[str, Any]:
        if self._file is None:
            self._open()
        folder = self.media_dir
        folder.mkdir(exist_ok=True)
        if item.source is not None:
            target = folder / f"{item.turn_id}-{item.role}-{item.index}{item.source.suffix}"
            _link_or_copy(item.source, target)
        elif item.image is not None:
            target = folder / f"{item.turn_id}-image-{item.index}.png"
            _atomic(target, lambda tmp: _write_png(tmp, item.image))
        else:
            target = folder / f"{item.turn_id}-{item.role}.wav"
            _atomic(target, lambda tmp: write_wav(tmp, np.asarray(item.audio).reshape(-1), item.rate_hz))
        record: dict[str, Any] = {"kind": "media", "time": time.time(), "turn_id": item.turn_id}
        record.update(role=item.role, file=f"{folder.name}/{target.name}")
        return record


def media_dir_of(journal: Path) -> Path:
    return journal.with_name(journal.stem + MEDIA_SUFFIX)


def _atomic(target: Path, write: Callable[[Path], object]) -> None:
    """Write `target` whole or not at all: a temporary file, fsynced, renamed over nothing."""
    tmp = target.with_name(target.name + ".tmp")
    write(tmp)
    with open(tmp, "rb") as done:
        os.fsync(done.fileno())
    os.replace(tmp, target)
    _fsync_dir(target.parent)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except FileExistsError:
        return
    except OSError:
        _atomic(target, lambda tmp: shutil.copyfile(source, tmp))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_png(path: Path, rgb: Any) -> None:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(path, format="PNG")


def read_history(path: Path) -> list[dict[str, Any]]:
    """Every complete record of a journal (a torn last line and the header are left out)."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("kind") != HEADER_KIND:
            records.append(record)
    return records
