"""A push-to-talk key that works while the window is in the background.

pynput listens to the X server's key events (the RECORD extension) without taking the key from the
focused program. Only X11 allows that: on a Wayland session an app cannot read keys outside its own
windows (GNOME and KDE offer global shortcuts only through the desktop portal), so there the
hotkey is refused with a message and Space in the window still works. Off by default: a listener
that sees every key is the user's choice to make (`[window] talk_hotkey` in config.toml).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)


class GlobalTalkKey(QObject):
    """`pressed` when the whole combination (e.g. "<ctrl>+<alt>+<space>") is down, `released` when a
    key of it comes up; both from the listener's thread (queued to Qt-thread slots)."""

    pressed = Signal()
    released = Signal()

    def __init__(self, hotkey: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.hotkey = hotkey
        self._listener: Any = None
        self._combo: set[Any] = set()
        self._down: set[Any] = set()
        self.active = False

    def start(self) -> None:
        """Start listening; raises `ValueError` with a message for the user when it cannot."""
        if os.environ.get("WAYLAND_DISPLAY") and not os.environ.get("DISPLAY"):
            raise ValueError(
                "a global push-to-talk key needs an X11 session (Wayland lets no app read keys outside "
                "its windows); hold Space in the window instead"
            )
        from pynput import keyboard

        try:
            self._combo = set(keyboard.HotKey.parse(self.hotkey))
        except ValueError as error:
            raise ValueError(
                f"window.talk_hotkey {self.hotkey!r} is not a key combination ({error})"
            ) from None
        listener = keyboard.Listener(on_press=self._on_press, on_release=self._on_release)
        listener.start()
        listener.wait()
        if not listener.is_alive():
            raise ValueError("the global push-to-talk key could not listen to the keyboard (no X server?)")
        self._listener = listener

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None

    def _canonical(self, key: Any) -> Any:
        return self._listener.canonical(key) if self._listener is not None else key

    def _on_press(self, key: Any) -> None:
        canonical = self._canonical(key)
        self._down.add(canonical)
        if not self.active and self._combo and self._combo <= self._down:
            self.active = True
            self.pressed.emit()

    def _on_release(self, key: Any) -> None:
        canonical = self._canonical(key)
        self._down.discard(canonical)
        if self.active and canonical in self._combo:
            self.active = False
            self.released.emit()


def start_talk_hotkey(hotkey: str, session: Any, window: Any, text_only: bool) -> GlobalTalkKey | None:
    """The global push-to-talk key the user set (`[window] talk_hotkey`), driving the session's
    push-to-talk; a key that cannot work is said in the window."""
    if not hotkey or text_only:
        return None
    key = GlobalTalkKey(hotkey, window)
    key.pressed.connect(session.press_talk)
    key.released.connect(session.release_talk)
    try:
        key.start()
    except (ValueError, ImportError) as error:
        window.show_error(f"The push-to-talk key {hotkey!r} works only in the window: {error}.")
        return None
    return key
