"""The persona editor: create, edit and delete personas (presets are edited as the user's own copy)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from facts import VOICES


class PersonaView(Protocol):
    """What the editor shows of a persona (`app.personas.Persona` fits)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def system_prompt(self) -> str: ...
    @property
    def voice(self) -> str: ...
    @property
    def greeting(self) -> str: ...
    @property
    def preset(self) -> bool: ...


class PersonaStore(Protocol):
    """The personas the editor changes (`app.personas.PersonaLibrary` fits); its errors are
    `ValueError` or `OSError`, with a message that names the persona or the file."""

    problems: list[str]

    def all(self) -> Sequence[PersonaView]: ...
    def get(self, persona_id: str) -> PersonaView: ...
    def save_fields(
        self, persona_id: str, name: str, prompt: str, voice: str, greeting: str
    ) -> PersonaView: ...
    def new_id(self, name: str) -> str: ...
    def delete(self, persona_id: str) -> None: ...
    def is_user(self, persona_id: str) -> bool: ...
    def is_preset(self, persona_id: str) -> bool: ...


class PersonaEditor(QDialog):
    """Edits `library` in place; `changed` carries the id of the persona saved or deleted."""

    changed = Signal(str)

    def __init__(self, library: PersonaStore, current: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Personas")
        self.resize(760, 480)
        self.library = library
        self._editing_id = ""
        self.list = QListWidget(self)
        self.name = QLineEdit(self)
        self.voice = QComboBox(self)
        for voice in VOICES:
            self.voice.addItem(voice.capitalize(), voice)
        self.greeting = QLineEdit(self)
        self.prompt = QPlainTextEdit(self)
        self.prompt.setPlaceholderText("The system prompt: who the assistant is and how it talks")
        self.message = QLabel("", self)
        self.message.setWordWrap(True)
        self.new_button = QPushButton("New", self)
        self.save_button = QPushButton("Save", self)
        self.delete_button = QPushButton("Delete", self)

        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("Voice", self.voice)
        form.addRow("Greeting", self.greeting)
        form.addRow("System prompt", self.prompt)
        buttons = QHBoxLayout()
        for button in (self.new_button, self.save_button, self.delete_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        right = QVBoxLayout()
        right.addLayout(form, 1)
        right.addWidget(self.message)
        right.addLayout(buttons)
        top = QHBoxLayout()
        top.addWidget(self.list, 1)
        top.addLayout(right, 3)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(top, 1)
        layout.addWidget(close)

        self.list.currentItemChanged.connect(self._show_item)
        self.new_button.clicked.connect(self.start_new)
        self.save_button.clicked.connect(self.save)
        self.delete_button.clicked.connect(self.delete)
        self.refresh(current)

    def refresh(self, select: str = "") -> None:
        self.list.blockSignals(True)
        self.list.clear()
        for persona in self.library.all():
            suffix = "" if not persona.preset else " (preset)"
            item = QListWidgetItem(persona.name + suffix, self.list)
            item.setData(Qt.ItemDataRole.UserRole, persona.id)
            if persona.id == select:
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)
        if self.list.currentItem() is None and self.list.count():
            self.list.setCurrentRow(0)
        self._show_item(self.list.currentItem())
        if self.library.problems:
            self.message.setText("Could not read: " + "; ".join(self.library.problems))

    def _show_item(self, item: QListWidgetItem | None) -> None:
        if item is None:
            return
        persona = self.library.get(item.data(Qt.ItemDataRole.UserRole))
        self._editing_id = persona.id
        self.name.setText(persona.name)
        self.voice.setCurrentIndex(max(0, self.voice.findData(persona.voice)))
        self.greeting.setText(persona.greeting)
        self.prompt.setPlainText(persona.system_prompt)
        self.delete_button.setEnabled(self.library.is_user(persona.id))
        self.delete_button.setText(
            "Restore preset" if persona.preset is False and self.library.is_preset(persona.id) else "Delete"
        )
        self.message.setText("")

    def start_new(self) -> None:
        self.list.clearSelection()
        self._editing_id = ""
        self.name.setText("New persona")
        self.voice.setCurrentIndex(0)
        self.greeting.setText("")
        self.prompt.setPlainText("")
        self.delete_button.setEnabled(False)
        self.name.setFocus()
        self.name.selectAll()

    def save(self) -> None:
        persona_id = self._editing_id or self.library.new_id(self.name.text())
        try:
            saved = self.library.save_fields(
                persona_id,
                self.name.text().strip(),
                self.prompt.toPlainText().strip(),
                self.voice.currentData(),
                self.greeting.text().strip(),
            )
        except (ValueError, OSError) as error:
            self.message.setText(str(error))
            return
        self.refresh(saved.id)
        self.message.setText(f"Saved {saved.name!r}.")
        self.changed.emit(saved.id)

    def delete(self) -> None:
        persona_id = self._editing_id
        try:
            self.library.delete(persona_id)
        except (ValueError, OSError) as error:
            self.message.setText(str(error))
            return
        self.refresh(persona_id)
        self.changed.emit(persona_id)
