"""Exporting the conversation on screen (File › Export): the folder asked for, the details line
(persona, voice, model) and what the window says of it. Writing the files is `app/export.py`'s."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QStandardPaths
from PySide6.QtWidgets import QFileDialog

from app.export import Exported, export_conversation
from facts import DEMO_LABEL

if TYPE_CHECKING:
    from app.desk import Desk


def ask_export(desk: Desk) -> None:
    documents = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    folder = QFileDialog.getExistingDirectory(desk.window, "Export the conversation to", documents)
    if folder:
        export_to(desk, Path(folder))


def export_to(desk: Desk, folder: Path) -> Exported | None:
    info = desk.session.model_info
    details = f"Persona: {desk.persona.name} · voice: {desk.session.voice_in_use}"
    if info is not None:
        details += f" · model: {DEMO_LABEL if info.is_demo else info.source}"
    try:
        exported = export_conversation(
            folder, desk.engine.history(), desk.engine.recording.turns(), details=details
        )
    except OSError as error:
        desk.window.show_error(f"Export failed: {error}")
        return None
    desk.window.show_info(
        f"Exported to {exported.markdown}" + (f" and {exported.wav}" if exported.wav else "")
    )
    return exported
