"""The past conversations: a searchable list, a reader for the one opened, and its actions.

Widgets only: the list shows the rows and the problems it is given and sends intents (search, open,
play, stop, continue, delete, export) with the row's key; the app layer reads and deletes files.
Delete asks first: `ask_delete` opens a confirmation, and only "Delete" there sends `delete_confirmed`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal, SignalInstance
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from events import Message

KEY_ROLE = Qt.ItemDataRole.UserRole


@dataclass(frozen=True)
class ConversationRow:
    """One line of the list: `key` names it in the intents; `problem` (if any) is shown beside it."""

    key: str
    title: str  # date, persona
    detail: str  # first words, turns, duration
    problem: str = ""


class ConversationList(QWidget):
    search_changed = Signal(str)
    open_requested = Signal(str)
    play_requested = Signal(str)
    stop_requested = Signal()
    continue_requested = Signal(str)
    delete_requested = Signal(str)
    delete_confirmed = Signal(str)
    export_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Past conversations")
        self.confirmation: QMessageBox | None = None
        self._opened = ""
        layout = QVBoxLayout(self)
        self.search_box = QLineEdit(self)
        self.search_box.setPlaceholderText("Search past conversations")
        self.search_box.setAccessibleName("Search conversations")
        self.search_box.setClearButtonEnabled(True)
        layout.addWidget(self.search_box)
        self.problems_label = QLabel(self)
        self.problems_label.setObjectName("journalProblems")
        self.problems_label.setWordWrap(True)
        self.problems_label.setStyleSheet("color:#8a1c1c")
        self.problems_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problems_label.hide()
        layout.addWidget(self.problems_label)
        split = QSplitter(Qt.Orientation.Vertical, self)
        self.list = QListWidget(split)
        self.list.setAccessibleName("Conversations")
        self.reader = QTextBrowser(split)
        self.reader.setAccessibleName("Conversation")
        layout.addWidget(split, 1)
        self.empty_label = QLabel("No past conversations yet.", self)
        layout.addWidget(self.empty_label)
        buttons = QHBoxLayout()
        self.open_button = QPushButton("Open", self)
        self.play_button = QPushButton("Play", self)
        self.stop_button = QPushButton("Stop", self)
        self.continue_button = QPushButton("Continue", self)
        self.continue_button.setToolTip("Carry on this conversation: the assistant remembers it")
        self.export_button = QPushButton("Export…", self)
        self.delete_button = QPushButton("Delete…", self)
        for button in (
            self.open_button, self.play_button, self.stop_button, self.continue_button,
            self.export_button, self.delete_button,
        ):  # fmt: skip
            buttons.addWidget(button)
        layout.addLayout(buttons)

        self.search_box.textChanged.connect(self.search_changed)
        self.list.itemActivated.connect(lambda item: self.open_requested.emit(item.data(KEY_ROLE)))
        self.list.currentItemChanged.connect(lambda *_: self._enable())
        self.open_button.clicked.connect(lambda: self._emit(self.open_requested))
        self.play_button.clicked.connect(lambda: self._emit(self.play_requested))
        self.stop_button.clicked.connect(self.stop_requested)
        self.continue_button.clicked.connect(lambda: self._emit(self.continue_requested))
        self.export_button.clicked.connect(lambda: self._emit(self.export_requested))
        self.delete_button.clicked.connect(lambda: self._emit(self.delete_requested))
        self._playable = self._continuable = False
        self.set_playing(False)
        self._enable()

    # -- what the app tells the list ------------------------------------------------------------------

    def show_rows(self, rows: Sequence[ConversationRow], problems: Sequence[str] = ()) -> None:
        """Replace the list (the selection stays on the same key when it is still there)."""
        current = self.current_key()
        self.list.clear()
        for row in rows:
            text = f"{row.title}\n{row.detail}" + (f"\n⚠ {row.problem}" if row.problem else "")
            item = QListWidgetItem(text)
            item.setData(KEY_ROLE, row.key)
            item.setToolTip(row.problem or row.detail)
            self.list.addItem(item)
            if row.key == current:
                self.list.setCurrentItem(item)
        self.empty_label.setVisible(not rows)
        if self.search_box.text().strip() and not rows:
            self.empty_label.setText("No conversation holds those words.")
        else:
            self.empty_label.setText("No past conversations yet.")
        self.problems_label.setText("\n".join(problems))
        self.problems_label.setVisible(bool(problems))
        self._enable()

    def show_conversation(
        self, key: str, title: str, messages: Sequence[Message], *, playable: bool, continuable: bool
    ) -> None:
        """The opened conversation in the reader."""
        self._opened, self._playable, self._continuable = key, playable, continuable
        self.select(key)
        parts = [f"<h3>{html.escape(title)}</h3>"]
        for message in messages:
            text = html.escape(message.text).replace("\n", "<br>")
            if message.role == "user":
                spoken = f" ({message.audio_s:.1f} s)" if message.audio_s else ""
                parts.append(f'<p><b style="color:#2a6fdb">You{spoken}:</b> {text}</p>')
            else:
                cut = " <i>(interrupted)</i>" if message.interrupted else ""
                parts.append(f'<p><b style="color:#e67e22">Assistant:</b> {text}{cut}</p>')
        self.reader.setHtml("".join(parts))
        self._enable()

    def clear_conversation(self) -> None:
        self._opened, self._playable, self._continuable = "", False, False
        self.reader.clear()
        self._enable()

    def set_playing(self, playing: bool) -> None:
        self.stop_button.setEnabled(playing)

    def ask_delete(self, key: str, question: str) -> QMessageBox:
        """Ask before deleting; "Delete" sends `delete_confirmed(key)`, anything else nothing."""
        box = QMessageBox(QMessageBox.Icon.Warning, "Delete the conversation?", question, parent=self)
        delete = box.addButton("Delete", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)

        def answered() -> None:
            if box.clickedButton() is delete:
                self.delete_confirmed.emit(key)
            self.confirmation = None

        box.finished.connect(lambda _result: answered())
        self.confirmation = box
        box.open()
        return box

    # -- reading the list -----------------------------------------------------------------------------

    def keys(self) -> list[str]:
        return [self.list.item(i).data(KEY_ROLE) for i in range(self.list.count())]

    def current_key(self) -> str:
        item = self.list.currentItem()
        return str(item.data(KEY_ROLE)) if item is not None else ""

    def select(self, key: str) -> None:
        for i in range(self.list.count()):
            if self.list.item(i).data(KEY_ROLE) == key:
                self.list.setCurrentRow(i)
                return

    def _emit(self, signal: SignalInstance) -> None:
        key = self.current_key()
        if key:
            signal.emit(key)

    def _enable(self) -> None:
        chosen = bool(self.current_key())
        opened = chosen and self.current_key() == self._opened
        for button in (self.open_button, self.export_button, self.delete_button):
            button.setEnabled(chosen)
        self.play_button.setEnabled(opened and self._playable)
        self.continue_button.setEnabled(opened and self._continuable)
