"""Writing TOML (tomllib only reads it) and replacing files atomically.

The project's files are flat: tables of strings, booleans, integers and floats. Writing them here
avoids a dependency; a temp file and `os.replace` means a crash never leaves half a file.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

Scalar = str | bool | int | float


def quote(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, the rest kept."""
    out = ['"']
    for char in text:
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def value(item: Scalar) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        if math.isnan(item):
            return "nan"
        if math.isinf(item):
            return "inf" if item > 0 else "-inf"
        return repr(item)
    if isinstance(item, str):
        return quote(item)
    raise TypeError(f"cannot write {type(item).__name__} as a TOML value")


def dumps(data: dict[str, Any]) -> str:
    """Top-level scalars first, then one `[table]` per dict of scalars."""
    lines = [f"{key} = {value(item)}" for key, item in data.items() if not isinstance(item, dict)]
    for name, table in data.items():
        if not isinstance(table, dict):
            continue
        if lines:
            lines.append("")
        lines.append(f"[{name}]")
        lines += [f"{key} = {value(item)}" for key, item in table.items()]
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step (a temp file beside it, then `os.replace`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
