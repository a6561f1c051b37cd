"""Push-to-talk wherever the focus is (issue 14): Space held on every focusable widget of the window
presses and releases talk once, and never clicks the focused button; in a box the user types into,
Space is a space."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QWidget

from ui.main_window import MainWindow
from ui.talk_key import takes_typing


def focusable(window: MainWindow) -> list[QWidget]:
    return [
        w
        for w in window.findChildren(QWidget)
        if w.focusPolicy() != Qt.FocusPolicy.NoFocus and w.isVisibleTo(window) and w.isEnabled()
    ]


def test_space_pushes_to_talk_on_every_focusable_widget(qtbot: Any) -> None:
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    window.activateWindow()
    qtbot.waitExposed(window)
    talk: list[str] = []
    window.talk_pressed.connect(lambda: talk.append("press"))
    window.talk_released.connect(lambda: talk.append("release"))
    muted: list[bool] = []
    window.mute_toggled.connect(muted.append)
    widgets = focusable(window)
    assert window.mute_button in widgets and window.transcript in widgets and window.text_box in widgets
    for widget in widgets:
        widget.setFocus()
        qtbot.waitUntil(lambda w=widget: QApplication.focusWidget() is w, timeout=2_000)
        before = list(talk)
        qtbot.keyPress(widget, Qt.Key.Key_Space)
        qtbot.keyPress(widget, Qt.Key.Key_Space)  # still held: no second press
        qtbot.keyRelease(widget, Qt.Key.Key_Space)
        if takes_typing(widget):
            assert talk == before, widget
        else:
            assert talk == [*before, "press", "release"], widget
    assert not muted  # Space on the focused "Mute mic" button talked instead of muting
    assert " " in window.text_box.text()  # and in the text box it typed
