"""The camera panel: a mirrored preview, the camera's status, an on/off toggle and a camera picker.

Widgets only: the app hands it frames and status text and hears the user's choices as signals.
A frame is shrunk by striding before it becomes a QImage, so a preview costs well under a
millisecond of the Qt thread.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QComboBox, QLabel, QPushButton, QVBoxLayout, QWidget

PREVIEW_WIDTH = 240
PREVIEW_HEIGHT = 180
VIDEO_FILE = "\0video-file"  # the picker's "Video file…" item


def preview_image(rgb: np.ndarray, max_width: int = PREVIEW_WIDTH, mirror: bool = True) -> QImage:
    """(h, w, 3) uint8 RGB as a QImage at most `max_width` wide, mirrored like a mirror (the user's
    right hand on the right) unless `mirror` is off (a shared screen)."""
    width = rgb.shape[1]
    step = max(1, -(-width // max_width))
    small = np.ascontiguousarray(rgb[::step, ::-step] if mirror else rgb[::step, ::step])
    height, width = small.shape[:2]
    return QImage(small.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


class CameraView(QWidget):
    toggled = Signal(bool)
    source_chosen = Signal(str)  # a camera index as text, or a video file
    file_requested = Signal()  # the user picked "Video file…"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.preview = QLabel("camera off", self)
        self.preview.setObjectName("cameraPreview")
        self.preview.setFixedSize(PREVIEW_WIDTH, PREVIEW_HEIGHT)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setStyleSheet("background:#222;color:#bbb")
        self.status_label = QLabel("", self)
        self.status_label.setObjectName("cameraStatus")
        self.status_label.setWordWrap(True)
        self.status_label.setMaximumWidth(PREVIEW_WIDTH)
        self.toggle_button = QPushButton("Camera on", self)
        self.toggle_button.setCheckable(True)
        self.toggle_button.setToolTip("The assistant sees the camera while you speak")
        self.source_box = QComboBox(self)
        self.source_box.setAccessibleName("Camera")
        self.source_box.setMaximumWidth(PREVIEW_WIDTH)
        for widget in (self.preview, self.status_label, self.toggle_button, self.source_box):
            layout.addWidget(widget)
        layout.addStretch(1)
        self.toggle_button.toggled.connect(self._toggled)
        self.source_box.activated.connect(self._chosen)

    def show_frame(self, rgb: np.ndarray) -> None:
        self.preview.setPixmap(QPixmap.fromImage(preview_image(rgb)))

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)
        self.status_label.setVisible(bool(text))

    def set_on(self, on: bool) -> None:
        """Show the camera as on or off without sending `toggled`."""
        self.toggle_button.blockSignals(True)
        self.toggle_button.setChecked(on)
        self.toggle_button.blockSignals(False)
        self._show_on(on)

    def set_sources(self, cameras: list[tuple[str, str]], current: str) -> None:
        """`cameras`: (label, source) pairs; a current source not among them (a file) is added."""
        box = self.source_box
        box.clear()
        for label, source in cameras:
            box.addItem(label, source)
        if current and box.findData(current) < 0:
            box.addItem(current.replace("\\", "/").rsplit("/", 1)[-1], current)
        box.addItem("Video file…", VIDEO_FILE)
        index = box.findData(current)
        box.setCurrentIndex(max(0, index))

    def _toggled(self, on: bool) -> None:
        self._show_on(on)
        self.toggled.emit(on)

    def _show_on(self, on: bool) -> None:
        self.toggle_button.setText("Camera off" if on else "Camera on")
        if not on:
            self.preview.clear()
            self.preview.setText("camera off")

    def _chosen(self, _index: int) -> None:
        source = self.source_box.currentData()
        if source == VIDEO_FILE:
            self.file_requested.emit()
        else:
            self.source_chosen.emit(source)
