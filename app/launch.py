"""What the command line asks the app to start."""

from __future__ import annotations

from dataclasses import dataclass

from app.config import LoadedConfig


@dataclass(frozen=True)
class Launch:
    """`loaded.config` already has the flags applied; `loaded.error` is a broken file's problem."""

    loaded: LoadedConfig
    demo: bool = False
    text_only: bool = False
