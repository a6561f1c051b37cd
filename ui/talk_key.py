"""Space held pushes to talk wherever the focus is in the window (a button, the transcript, a list),
except in a box the user types into. Installed on the application, so it sees the key before the
focused widget would take it (a focused button would otherwise "click" on Space)."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLineEdit,
    QPlainTextEdit,
    QTextEdit,
    QWidget,
)


def takes_typing(widget: QWidget | None) -> bool:
    """Whether Space in `widget` is a character the user is typing."""
    if isinstance(widget, QLineEdit | QAbstractSpinBox):
        return True
    if isinstance(widget, QTextEdit | QPlainTextEdit):
        return not widget.isReadOnly()
    return isinstance(widget, QComboBox) and widget.isEditable()


class TalkKey(QObject):
    """`pressed` when Space goes down in `window` (not typing), `released` when it comes up."""

    pressed = Signal()
    released = Signal()

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self.window = window
        self.down = False
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind not in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease) or not isinstance(event, QKeyEvent):
            return False
        if event.key() != Qt.Key.Key_Space or event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
            return False
        if not isinstance(watched, QWidget) or watched.window() is not self.window:
            return False
        if takes_typing(watched):
            return False
        if not event.isAutoRepeat():
            if kind == QEvent.Type.KeyPress and not self.down:
                self.down = True
                self.pressed.emit()
            elif kind == QEvent.Type.KeyRelease and self.down:
                self.down = False
                self.released.emit()
        return True
