"""The past-conversations widget alone: it shows rows and problems, sends intents with the row's
key, and sends a delete only after the confirmation's "Delete"."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from events import Message
from ui.conversation_list import ConversationList, ConversationRow

ROWS = [
    ConversationRow("a#0", "2026-12-01 10:00 · assistant", "“hello” · 5 turns, 2 min"),
    ConversationRow("b#0", "2026-11-30 09:00 · teacher", "“cut” · 1 turn, 5 s", problem="b.jsonl: cut off"),
]


def make_list(qtbot: Any) -> tuple[ConversationList, list[tuple[str, Any]]]:
    widget = ConversationList()
    qtbot.addWidget(widget)
    widget.show()
    sent: list[tuple[str, Any]] = []
    for name in ("search_changed", "open_requested", "play_requested", "continue_requested",
                 "delete_requested", "delete_confirmed", "export_requested"):  # fmt: skip
        getattr(widget, name).connect(lambda value, name=name: sent.append((name, value)))
    return widget, sent


def test_rows_problems_and_intents(qtbot: Any) -> None:
    widget, sent = make_list(qtbot)
    assert widget.empty_label.isVisible() and not widget.open_button.isEnabled()
    widget.show_rows(ROWS, ["b.jsonl: its last line is cut off"])
    assert widget.keys() == ["a#0", "b#0"] and not widget.empty_label.isVisible()
    assert widget.problems_label.isVisible() and "b.jsonl" in widget.problems_label.text()
    assert "cut off" in widget.list.item(1).text()
    qtbot.keyClicks(widget.search_box, "hel")
    assert sent[-1] == ("search_changed", "hel")
    widget.list.setCurrentRow(0)
    assert not widget.continue_button.isEnabled()  # not opened yet
    qtbot.mouseClick(widget.open_button, Qt.MouseButton.LeftButton)
    assert sent[-1] == ("open_requested", "a#0")
    messages = [
        Message("user", "hello", 1, audio_s=1.5),
        Message("assistant", "hi <there>", 1, interrupted=True),
    ]
    widget.show_conversation("a#0", "title", messages, playable=True, continuable=True)
    text = widget.reader.toPlainText()
    assert "You (1.5 s): hello" in text and "Assistant: hi <there> (interrupted)" in text
    buttons = {"play_requested": widget.play_button, "continue_requested": widget.continue_button,
               "export_requested": widget.export_button}  # fmt: skip
    for name, button in buttons.items():
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        assert sent[-1] == (name, "a#0")
    widget.list.setCurrentRow(1)
    assert not widget.play_button.isEnabled() and not widget.continue_button.isEnabled()
    widget.show_rows([], [])
    assert widget.empty_label.text() == "No conversation holds those words."


def test_delete_asks_first(qtbot: Any) -> None:
    widget, sent = make_list(qtbot)
    widget.show_rows(ROWS)
    widget.list.setCurrentRow(1)
    qtbot.mouseClick(widget.delete_button, Qt.MouseButton.LeftButton)
    assert sent[-1] == ("delete_requested", "b#0")
    box = widget.ask_delete("b#0", "Delete b.jsonl?")
    assert box.isVisible() and box.text() == "Delete b.jsonl?"
    box.button(QMessageBox.StandardButton.Cancel).click()
    qtbot.waitUntil(lambda: widget.confirmation is None)
    assert not [s for s in sent if s[0] == "delete_confirmed"]
    box = widget.ask_delete("b#0", "Delete b.jsonl?")
    (delete,) = [b for b in box.buttons() if b.text() == "Delete"]
    delete.click()
    qtbot.waitUntil(lambda: widget.confirmation is None)
    assert sent[-1] == ("delete_confirmed", "b#0")
