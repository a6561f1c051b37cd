"""The global push-to-talk key (issue 14) under Xvfb: another X client holds the focus, the key is
pressed through the X server (XTest), and the app's listener sees it press and release talk while
the focus stays where it was."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import pytest

from app.global_hotkey import GlobalTalkKey
from tests.app.test_e2e import display

__all__ = ["display"]  # the Xvfb fixture

OTHER_CLIENT = """
import sys, time
from Xlib import X, display
d = display.Display()
screen = d.screen()
window = screen.root.create_window(0, 0, 300, 200, 0, screen.root_depth, X.InputOutput, X.CopyFromParent,
                                   event_mask=X.KeyPressMask | X.KeyReleaseMask)
window.map()
d.sync()
window.set_input_focus(X.RevertToParent, X.CurrentTime)
d.sync()
print(window.id, flush=True)
time.sleep(60)
"""


def focused_window() -> int:
    from Xlib import display

    d = display.Display()
    try:
        return int(d.get_input_focus().focus.id)
    finally:
        d.close()


def test_the_global_key_talks_while_another_program_has_the_focus(
    qtbot: Any, display: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISPLAY", display)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    other = subprocess.Popen(
        [sys.executable, "-c", OTHER_CLIENT], env=dict(os.environ), stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout is not None
        other_window = int(other.stdout.readline())
        assert focused_window() == other_window
        key = GlobalTalkKey("<ctrl>+<alt>+<space>")
        seen: list[str] = []
        key.pressed.connect(lambda: seen.append("press"))
        key.released.connect(lambda: seen.append("release"))
        key.start()
        listener = key._listener
        from pynput.keyboard import Controller, Key

        typing = Controller()
        try:
            typing.press(Key.space)  # space alone is not the combination
            typing.release(Key.space)
            for part in (Key.ctrl, Key.alt, Key.space):
                typing.press(part)
            qtbot.waitUntil(lambda: seen == ["press"], timeout=30_000)
            for part in (Key.space, Key.alt, Key.ctrl):
                typing.release(part)
            qtbot.waitUntil(lambda: seen == ["press", "release"], timeout=30_000)
            assert focused_window() == other_window  # the key was not taken from the other program
        finally:
            key.stop()
            # pynput's X listener ends on the next event after stop(): one key, so that its thread
            # is gone before the display closes (else it dies later, on a broken pipe).
            typing.press(Key.shift)
            typing.release(Key.shift)
            listener.join(10)
        assert not listener.is_alive()
    finally:
        other.kill()
        other.wait(5)


def test_a_key_that_is_no_combination_is_refused_with_the_setting_named() -> None:
    with pytest.raises(ValueError, match=re.escape("window.talk_hotkey '<ctrl>+<nokey>'")):
        GlobalTalkKey("<ctrl>+<nokey>").start()
