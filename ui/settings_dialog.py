"""Settings that need the model reloaded: where it comes from, the device, quantization and
precision, and whether it writes down what the user says. "Apply" sends the changed ones; the app
saves them and reloads the model."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)


class SettingsDialog(QDialog):
    """`applied(changes)`: the settings the user changed, as `[model]` keys and values, and
    `transcribe` (true or false) when the user's words were turned on or off."""

    applied = Signal(dict)

    def __init__(
        self,
        current: dict[str, str],
        choices: dict[str, tuple[str, ...]],
        paths: str = "",
        parent: QWidget | None = None,
        *,
        transcribe: bool = True,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Omni Desk: model settings")
        self.current = dict(current)
        self.transcribe = transcribe
        self.source = QLineEdit(current.get("source", ""), self)
        self.source.setToolTip("A hub id, instruct, thinking or captioner, or a folder with the checkpoint")
        browse = QPushButton("Folder…", self)
        browse.clicked.connect(self._browse)
        source_row = QHBoxLayout()
        source_row.addWidget(self.source, 1)
        source_row.addWidget(browse)
        self.boxes: dict[str, QComboBox] = {}
        form = QFormLayout(self)
        form.addRow("Model", source_row)
        for key, label in (("device", "Device"), ("quantization", "Quantization"), ("dtype", "Precision")):
            box = QComboBox(self)
            box.setEditable(key == "device")  # cuda:1 and the like
            for choice in choices.get(key, ()):
                box.addItem(choice)
            box.setCurrentText(current.get(key, ""))
            self.boxes[key] = box
            form.addRow(label, box)
        self.words_box = QCheckBox("Write down what I say (in the transcript, journal and export)", self)
        self.words_box.setChecked(transcribe)
        self.words_box.setToolTip('Off: spoken turns show as "(spoken)" and the model does no transcription')
        form.addRow("Your words", self.words_box)
        note = QLabel("Applying reloads the model (the conversation goes on with the new one).", self)
        note.setWordWrap(True)
        form.addRow(note)
        if paths:
            where = QLabel(paths, self)
            where.setWordWrap(True)
            form.addRow(where)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Apply | QDialogButtonBox.StandardButton.Cancel
        )
        self.apply_button = buttons.button(QDialogButtonBox.StandardButton.Apply)
        self.apply_button.clicked.connect(self._apply)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def values(self) -> dict[str, str]:
        values = {key: box.currentText().strip() for key, box in self.boxes.items()}
        values["source"] = self.source.text().strip()
        return values

    def _apply(self) -> None:
        changes: dict[str, str | bool] = {
            k: v for k, v in self.values().items() if v and v != self.current.get(k)
        }
        if self.words_box.isChecked() != self.transcribe:
            changes["transcribe"] = self.words_box.isChecked()
        if changes:
            self.applied.emit(changes)
        self.accept()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Folder with the model (config.json and *.safetensors)"
        )
        if folder:
            self.source.setText(folder)
