"""The conversation journal: one JSON line per finished turn, flushed and fsynced as it happens.

Appending whole lines means a crash (even `kill -9` in the middle of a turn) leaves every earlier
line intact; a torn last line is skipped on reading. Files live in `conversations/` of the user
data directory (`OMNIDESK_DATA_DIR` overrides it).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

DATA_DIR_ENV = "OMNIDESK_DATA_DIR"


def data_dir() -> Path:
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir("omnidesk"))


class HistoryLog:
    def __init__(self, path: Path | None = None) -> None:
        folder = data_dir() / "conversations"
        self.path = path or folder / time.strftime("%Y%m%d-%H%M%S.jsonl")
        self._file: Any = None

    def write(self, kind: str, **fields: Any) -> None:
        """Append one record; errors (a full disk) are the caller's to show."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open while the app runs)
        record = {"kind": kind, "time": time.time(), "perf_s": time.perf_counter(), **fields}
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_history(path: Path) -> list[dict[str, Any]]:
    """Every complete record of a journal (a torn last line is left out)."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
