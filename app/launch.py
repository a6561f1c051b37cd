"""What the command line asks the app to start."""

from __future__ import annotations

from dataclasses import dataclass

from app.config import Config, LoadedConfig


@dataclass(frozen=True)
class Launch:
    """`loaded.config` already has the flags applied; `loaded.error` is a broken file's problem."""

    loaded: LoadedConfig
    demo: bool = False
    text_only: bool = False
    file_config: Config | None = None  # the file's own settings (what the app writes back, flags left out)

    @property
    def config(self) -> Config:
        return self.loaded.config
