"""The conversation journal: one JSON line per finished turn, flushed and fsynced as it happens.

Appending whole lines means a crash (even `kill -9` in the middle of a turn) leaves every earlier
line intact; a torn last line is skipped on reading. Files live in `conversations/` of the user
data directory (`OMNIDESK_DATA_DIR` overrides it). The writing and the fsync (~100 ms on a slow
disk) happen on the journal's own thread: the window never waits on the disk.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DATA_DIR_ENV = "OMNIDESK_DATA_DIR"


def data_dir() -> Path:
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir("omnidesk"))


class HistoryLog:
    """`write` returns at once; a failure (a full disk) goes to `on_error` with the reason."""

    def __init__(self, path: Path | None = None, on_error: Callable[[str], None] | None = None) -> None:
        folder = data_dir() / "conversations"
        self.path = path or folder / time.strftime("%Y%m%d-%H%M%S.jsonl")
        self.on_error = on_error or (lambda message: log.warning("%s", message))
        self._file: Any = None
        self._records: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="journal", daemon=True)
        self._thread.start()

    def write(self, kind: str, **fields: Any) -> None:
        """Append one record, stamped now."""
        self._records.put({"kind": kind, "time": time.time(), "perf_s": time.perf_counter(), **fields})

    def flush(self) -> None:
        """Wait until every record written so far is on disk."""
        self._records.join()

    def close(self) -> None:
        self._records.put(None)
        self._thread.join(5.0)

    def _run(self) -> None:
        while True:
            record = self._records.get()
            try:
                if record is None:
                    if self._file is not None:
                        self._file.close()
                        self._file = None
                    return
                self._append(record)
            except OSError as error:
                self.on_error(f"The conversation could not be saved to {self.path}: {error}")
            finally:
                self._records.task_done()

    def _append(self, record: dict[str, Any]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open while the app runs)
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())


def read_history(path: Path) -> list[dict[str, Any]]:
    """Every complete record of a journal (a torn last line is left out)."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
