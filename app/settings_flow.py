"""The window's model settings and About box: what they show (the config and journal paths among
it) and what applying does (save the changed `[model]` settings, reload the model); and the
window's choices saved to the config file on quit."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from PySide6.QtWidgets import QMessageBox

from app import config as cfg
from app.history_log import data_dir
from app.launch import version
from facts import DTYPES, QUANTIZATIONS
from ui.settings_dialog import SettingsDialog

if TYPE_CHECKING:
    from app.desk import Desk

log = logging.getLogger(__name__)


def where_things_live(desk: Desk) -> str:
    return (
        f"Settings: {desk.launch.loaded.path}\n"
        f"Conversations: {data_dir() / 'conversations'}\n"
        f"Personas: {cfg.config_dir() / 'personas'}"
    )


def open_settings(desk: Desk) -> SettingsDialog:
    model = desk.config.model
    current = {"source": model.source, "device": model.device, "quantization": model.quantization,
               "dtype": model.dtype}  # fmt: skip
    choices = {"device": ("auto", "cpu", "cuda"), "quantization": QUANTIZATIONS, "dtype": DTYPES}
    dialog = SettingsDialog(
        current, choices, where_things_live(desk), desk.window, transcribe=desk.config.conversation.transcribe
    )
    dialog.applied.connect(lambda changes: apply_model_settings(desk, changes))
    dialog.open()
    return dialog


def apply_model_settings(desk: Desk, changes: dict[str, Any]) -> None:
    """Save the changes and reload the model with them (a remote engine serves what it serves; the
    user's words are asked of it from the next connection)."""
    words = changes.pop("transcribe", None)
    if words is not None:
        desk.config = cfg.with_changes(desk.config, conversation={"transcribe": words})
        desk.remember(conversation={"transcribe": words})
    if changes:
        desk.change_model(**changes)
    if desk.config.engine.url:
        desk.window.show_info("Saved; the remote engine keeps its own model settings.")
        return
    desk.window.show_info("Model settings saved; reloading the model.")
    desk.choose_model()


def show_about(desk: Desk) -> QMessageBox:
    info = desk.session.model_info
    model = "none loaded" if info is None else f"{info.source or info.path} on {info.device}"
    box = QMessageBox(QMessageBox.Icon.Information, "About Omni Desk",
                      f"Omni Desk {version()}\nModel: {model}\n\n{where_things_live(desk)}",
                      QMessageBox.StandardButton.Ok, desk.window)  # fmt: skip
    box.open()
    return box


def save_settings(desk: Desk) -> None:
    """The persona, voice, mode and window geometry in use, saved with the user's own edits kept
    (tomlkit); a file that cannot be written is said on stderr, never raised at quit."""
    if not desk.launch.loaded.writable:
        return
    geometry = bytes(desk.window.geometry_state().toBase64().data()).decode()
    updated = cfg.with_changes(
        desk.file_config,
        conversation={"persona": desk.persona.id, "voice": desk.session.voice},
        audio={"mode": desk.session.mode},
        window={"geometry": geometry},
    )
    try:
        cfg.save_changes(desk.launch.loaded.path, desk.launch.file_config or desk.launch.config, updated)
        desk.file_config = updated
    except (OSError, cfg.ConfigError) as error:
        log.warning("settings not saved: %s", error)
        print(f"omnidesk: your settings were not saved ({error})", file=sys.stderr)
