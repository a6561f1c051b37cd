"""The screen sharing panel: a toggle, a picker (the whole screen or one window), a red "sharing"
indicator that is visible exactly while sharing is on, a small preview of what is shared and the
capture's status. Widgets only: the app hands it targets, frames and state, and hears the user's
choices as signals.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QComboBox, QLabel, QPushButton, QVBoxLayout, QWidget

from ui.camera_view import PREVIEW_WIDTH, preview_image

PREVIEW_HEIGHT = PREVIEW_WIDTH * 9 // 16


class TargetPicker(QComboBox):
    """A combo box that says when its list is about to open (the windows are listed again then)."""

    opening = Signal()

    def showPopup(self) -> None:
        self.opening.emit()
        super().showPopup()


class ScreenView(QWidget):
    toggled = Signal(bool)
    target_chosen = Signal(object)  # the item's data, as `set_targets` was given it
    targets_wanted = Signal()  # the picker is opening: give it the open windows

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.indicator = QLabel("", self)
        self.indicator.setObjectName("screenSharingIndicator")
        self.indicator.setStyleSheet("background:#c62828;color:white;font-weight:bold;padding:3px")
        self.indicator.setWordWrap(True)
        self.indicator.setMaximumWidth(PREVIEW_WIDTH)
        self.indicator.hide()
        self.preview = QLabel(self)
        self.preview.setObjectName("screenPreview")
        self.preview.setFixedSize(PREVIEW_WIDTH, PREVIEW_HEIGHT)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setStyleSheet("background:#222")
        self.preview.hide()
        self.status_label = QLabel("", self)
        self.status_label.setObjectName("screenStatus")
        self.status_label.setWordWrap(True)
        self.status_label.setMaximumWidth(PREVIEW_WIDTH)
        self.status_label.hide()
        self.toggle_button = QPushButton("Share screen", self)
        self.toggle_button.setCheckable(True)
        self.toggle_button.setToolTip("The assistant sees the screen or a window while you speak")
        self.target_box = TargetPicker(self)
        self.target_box.setAccessibleName("Screen to share")
        self.target_box.setMaximumWidth(PREVIEW_WIDTH)
        for widget in (self.indicator, self.preview, self.status_label, self.toggle_button, self.target_box):
            layout.addWidget(widget)
        self.toggle_button.toggled.connect(self.toggled.emit)
        self.target_box.activated.connect(
            lambda _index: self.target_chosen.emit(self.target_box.currentData())
        )
        self.target_box.opening.connect(self.targets_wanted.emit)

    @property
    def sharing(self) -> bool:
        return not self.indicator.isHidden()

    def set_sharing(self, on: bool, target: str) -> None:
        """Show sharing as on (the indicator names `target`) or off, without sending `toggled`."""
        self.toggle_button.blockSignals(True)
        self.toggle_button.setChecked(on)
        self.toggle_button.blockSignals(False)
        self.toggle_button.setText("Stop sharing" if on else "Share screen")
        self.indicator.setText(f"● Sharing {target}" if on else "")
        self.indicator.setVisible(on)
        self.preview.setVisible(on)
        if not on:
            self.preview.clear()

    def set_targets(self, targets: list[tuple[str, object]], current: object) -> None:
        """`targets`: (label, data) pairs; `current` is selected when it is among them."""
        box = self.target_box
        box.clear()
        for label, data in targets:
            box.addItem(label, data)
        index = next((i for i, (_label, data) in enumerate(targets) if data == current), 0)
        box.setCurrentIndex(index)

    def show_frame(self, rgb: np.ndarray) -> None:
        if self.sharing:
            self.preview.setPixmap(QPixmap.fromImage(preview_image(rgb, mirror=False)))

    def _chosen(self, _index: int) -> None:
        self.target_chosen.emit(self.target_box.currentData())

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)
        self.status_label.setVisible(bool(text))
