"""The tray icon: mute, the push-to-talk state, show the window and quit, from the panel while the
window is hidden or behind others. Shown only where the desktop has a tray (many Wayland and
minimal X sessions have none; the window has the same controls)."""

from __future__ import annotations

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QStyle, QSystemTrayIcon, QWidget


class Tray(QSystemTrayIcon):
    def __init__(self, window: QWidget) -> None:
        style = window.style()
        super().__init__(style.standardIcon(QStyle.StandardPixmap.SP_MediaVolume), window)
        self.window = window
        self.menu = QMenu(window)
        self.state_action = QAction("Loading…", self.menu)
        self.state_action.setEnabled(False)
        self.mute_action = QAction("Mute microphone", self.menu)
        self.mute_action.setCheckable(True)
        self.show_action = QAction("Show Omni Desk", self.menu)
        self.show_action.triggered.connect(self._show_window)
        self.quit_action = QAction("Quit", self.menu)
        self.quit_action.triggered.connect(window.close)
        for action in (self.state_action, self.mute_action, self.show_action, self.quit_action):
            self.menu.addAction(action)
        self.menu.insertSeparator(self.show_action)
        self.setContextMenu(self.menu)
        self.setToolTip("Omni Desk")
        self.activated.connect(self._on_activated)
        if QSystemTrayIcon.isSystemTrayAvailable():
            self.show()

    def set_state(self, state: str, talking: bool = False) -> None:
        text = "Talking (push-to-talk held)" if talking else state.capitalize()
        self.state_action.setText(text)
        self.setToolTip(f"Omni Desk: {text}")

    def set_muted(self, muted: bool) -> None:
        self.mute_action.setChecked(muted)
        icon = QStyle.StandardPixmap.SP_MediaVolumeMuted if muted else QStyle.StandardPixmap.SP_MediaVolume
        self.setIcon(self.window.style().standardIcon(icon))

    def _show_window(self) -> None:
        self.window.showNormal()
        self.window.raise_()
        self.window.activateWindow()

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self._show_window()
