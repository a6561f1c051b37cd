"""Settings that need the model reloaded: where it comes from, the device, quantization and
precision. "Apply" sends the changed ones; the app saves them and reloads the model."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
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
    """`applied(changes)`: the model settings the user changed, as `[model]` keys and values."""

    applied = Signal(dict)

    def __init__(
        self,
        current: dict[str, str],
        choices: dict[str, tuple[str, ...]],
        paths: str = "",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Omni Desk: model settings")
        self.current = dict(current)
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
        changes = {k: v for k, v in self.values().items() if v and v != self.current.get(k)}
        if changes:
            self.applied.emit(changes)
        self.accept()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Folder with the model (config.json and *.safetensors)"
        )
        if folder:
            self.source.setText(folder)
