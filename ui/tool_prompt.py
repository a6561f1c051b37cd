"""Asking the user before a tool that acts: the question with Yes and No, one row per call waiting,
above the transcript. Nothing runs until the user answers; the answer goes out on `answered`."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

STYLE = "QFrame#toolPrompt{background:#fff4d6;border-radius:4px}"


class ToolPrompt(QFrame):
    """`ask(call_id, question)` shows a row; Yes or No emits `answered(call_id, allowed)` and removes it."""

    answered = Signal(str, bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("toolPrompt")
        self.setStyleSheet(STYLE)
        self.setAccessibleName("Tool permission")
        self._rows: dict[str, QWidget] = {}
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(6, 4, 6, 4)
        self.hide()

    def questions(self) -> list[str]:
        return [row.findChild(QLabel).text() for row in self._rows.values()]  # type: ignore[union-attr]

    def ask(self, call_id: str, question: str) -> None:
        """A row for the question; a question asked again (an unclear spoken answer) is reworded."""
        if call_id in self._rows:
            self._rows[call_id].findChild(QLabel).setText(question)  # type: ignore[union-attr]
            return
        row = QWidget(self)
        line = QHBoxLayout(row)
        line.setContentsMargins(0, 0, 0, 0)
        label = QLabel(question, row)
        label.setWordWrap(True)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        line.addWidget(label, 1)
        for text, allowed in (("Yes", True), ("No", False)):
            button = QPushButton(text, row)
            button.setAccessibleName(f"{text}: {question[:60]}")
            button.clicked.connect(lambda _=False, a=allowed: self.answer(call_id, a))
            line.addWidget(button)
        self._layout.addWidget(row)
        self._rows[call_id] = row
        self.show()

    def answer(self, call_id: str, allowed: bool) -> None:
        """The user's answer (a button, or a yes or no said aloud)."""
        if self.withdraw(call_id):
            self.answered.emit(call_id, allowed)

    def withdraw(self, call_id: str) -> bool:
        """Take the question away (answered, or its turn was interrupted)."""
        row = self._rows.pop(call_id, None)
        if row is None:
            return False
        row.deleteLater()
        self.setVisible(bool(self._rows))
        return True

    def pending(self) -> list[str]:
        return list(self._rows)
