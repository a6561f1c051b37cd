"""The problems of the session, listed until the user dismisses them: a later problem never hides
an earlier one. The same message twice is one row with a count."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

STYLE = "QFrame#problems{background:#fdecea;border-radius:4px} QLabel{color:#8a1c1c}"
MAX_ROWS = 50  # a flood of one failure is one row with a count; fifty different ones is plenty


class ProblemList(QFrame):
    """`add(message)` shows a row with its own Dismiss; the list hides itself when it is empty."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("problems")
        self.setStyleSheet(STYLE)
        self.setAccessibleName("Problems")
        self._rows: list[tuple[str, int, QWidget]] = []
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(6, 4, 6, 4)
        self.dismiss_all_button = QPushButton("Dismiss all", self)
        self.dismiss_all_button.clicked.connect(self.clear)
        self._layout.addWidget(self.dismiss_all_button, alignment=Qt.AlignmentFlag.AlignRight)
        self.hide()

    def messages(self) -> list[str]:
        return [message for message, _count, _row in self._rows]

    def text(self) -> str:
        """Every problem shown, one a line."""
        return "\n".join(self.messages())

    def add(self, message: str) -> None:
        for index, (known, count, row) in enumerate(self._rows):
            if known == message:
                self._rows[index] = (known, count + 1, row)
                row.findChild(QLabel).setText(f"{message} (×{count + 1})")  # type: ignore[union-attr]
                self.changed.emit()
                return
        if len(self._rows) >= MAX_ROWS:
            self.dismiss(self._rows[0][0])
        row = QWidget(self)
        line = QHBoxLayout(row)
        line.setContentsMargins(0, 0, 0, 0)
        label = QLabel(message, row)
        label.setWordWrap(True)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        button = QPushButton("Dismiss", row)
        button.setAccessibleName(f"Dismiss: {message[:60]}")
        button.clicked.connect(lambda: self.dismiss(message))
        line.addWidget(label, 1)
        line.addWidget(button)
        self._layout.insertWidget(self._layout.count() - 1, row)
        self._rows.append((message, 1, row))
        self.dismiss_all_button.setVisible(len(self._rows) > 1)
        self.show()
        self.changed.emit()

    def dismiss(self, message: str) -> None:
        for index, (known, _count, row) in enumerate(self._rows):
            if known == message:
                del self._rows[index]
                row.deleteLater()
                break
        self.dismiss_all_button.setVisible(len(self._rows) > 1)
        self.setVisible(bool(self._rows))
        self.changed.emit()

    def dismiss_matching(self, words: str) -> None:
        """Dismiss the problems that mention `words` (a device that works again)."""
        for message in [m for m in self.messages() if words in m]:
            self.dismiss(message)

    def clear(self) -> None:
        for message in self.messages():
            self.dismiss(message)
