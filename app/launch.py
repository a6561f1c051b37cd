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


def version() -> str:
    """The installed package's version (the README's set-up installs it in place)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("omnidesk")
    except PackageNotFoundError:
        return "(not installed)"
