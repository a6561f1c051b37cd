"""The first-run dialog: the configured model cannot be used; download it, pick a folder, use the
CPU, or keep the demo model."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from facts import DEMO_LABEL


class FirstRunDialog(QDialog):
    """Says what is wrong in words, the technical text one click away, and offers what fixes it."""

    cpu_chosen = Signal()
    download_requested = Signal()
    download_cancelled = Signal()
    folder_chosen = Signal(str)
    demo_chosen = Signal()

    def __init__(
        self,
        source: str,
        headline: str,
        details: str = "",
        *,
        downloadable: bool = True,
        offer_cpu: bool = False,
        demo_running: bool = True,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Omni Desk: choose a model")
        self.setMaximumWidth(640)
        self.source = source
        then = (
            f"Meanwhile the app runs the {DEMO_LABEL}."
            if demo_running
            else "No model is loaded now: choose one of these."
        )
        offer = (
            "Download it (tens of gigabytes; an interrupted download resumes where it stopped) or choose "
            "a folder that holds it."
            if downloadable
            else "Choose a folder that holds the model."
        )
        intro = QLabel(f"<b>{html.escape(headline)}</b><br><br>{offer} {then}", self)
        intro.setWordWrap(True)
        self.details = QLabel(html.escape(details), self)
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setStyleSheet("color:#666")
        self.details.hide()
        self.details_button = QPushButton("Details…", self)
        self.details_button.setCheckable(True)
        self.details_button.toggled.connect(self.details.setVisible)
        self.details_button.setVisible(bool(details))
        self.cpu_button = QPushButton("Use the CPU instead", self)
        self.cpu_button.setVisible(offer_cpu)
        self.cpu_button.clicked.connect(self._cpu)
        self.size_label = QLabel("Size: asking the hub…", self)
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.hide()
        self.message = QLabel("", self)
        self.message.setWordWrap(True)
        self.download_button = QPushButton("Download", self)
        self.download_button.setVisible(downloadable)
        self.cancel_download_button = QPushButton("Stop download", self)
        self.cancel_download_button.hide()
        self.folder_button = QPushButton("Choose a folder…", self)
        self.demo_button = QPushButton(f"Keep the {DEMO_LABEL}", self)
        self.demo_button.setObjectName("demoButton")
        self.demo_button.setDefault(True)
        buttons = QHBoxLayout()
        for button in (self.download_button, self.cancel_download_button, self.folder_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        for widget in (
            intro,
            self.details_button,
            self.details,
            self.size_label,
            self.progress,
            self.message,
        ):
            layout.addWidget(widget)
        self.size_label.setVisible(downloadable)
        layout.addWidget(self.cpu_button)
        layout.addLayout(buttons)
        layout.addWidget(self.demo_button)
        self.download_button.clicked.connect(self._download)
        self.cancel_download_button.clicked.connect(self.download_cancelled)
        self.folder_button.clicked.connect(self._choose_folder)
        self.demo_button.clicked.connect(self._demo)

    def _download(self) -> None:
        self.download_button.setEnabled(False)
        self.cancel_download_button.show()
        self.progress.show()
        self.message.setText("Starting the download…")
        self.download_requested.emit()

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Folder with the model (config.json and *.safetensors)"
        )
        if folder:
            self.folder_chosen.emit(folder)

    def _cpu(self) -> None:
        self.cpu_chosen.emit()
        self.accept()

    def _demo(self) -> None:
        self.demo_chosen.emit()
        self.accept()

    def set_size(self, text: str, details: str = "") -> None:
        self.size_label.setText(f"Size: {text}")
        self.size_label.setToolTip(details)

    def set_progress(self, done_bytes: int, total_bytes: int, text: str) -> None:
        self.progress.show()
        self.progress.setValue(int(1000 * done_bytes / total_bytes) if total_bytes else 0)
        self.message.setText(text)

    def download_stopped(self, message: str) -> None:
        self.download_button.setEnabled(True)
        self.download_button.setText("Resume download")
        self.cancel_download_button.hide()
        self.message.setText(message)

    def show_problem(self, message: str, details: str = "") -> None:
        self.message.setText(message)
        self.message.setToolTip(details)
