"""The window's model settings and About box: what they show (the config and journal paths among
it) and what applying does (save the changed `[model]` settings, reload the model)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtWidgets import QMessageBox

from app import config as cfg
from app.history_log import data_dir
from app.launch import version
from facts import DTYPES, QUANTIZATIONS
from ui.settings_dialog import SettingsDialog

if TYPE_CHECKING:
    from app.desk import Desk


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
    dialog = SettingsDialog(current, choices, where_things_live(desk), desk.window)
    dialog.applied.connect(lambda changes: apply_model_settings(desk, changes))
    dialog.open()
    return dialog


def apply_model_settings(desk: Desk, changes: dict[str, Any]) -> None:
    """Save the changes and reload the model with them (a remote engine serves what it serves)."""
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
