"""The first-run dialog: the configured model is not on this computer; download it, pick a folder,
or run the demo model now."""

from __future__ import annotations

from PySide6.QtCore import Signal
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
    download_requested = Signal()
    download_cancelled = Signal()
    folder_chosen = Signal(str)
    demo_chosen = Signal()

    def __init__(self, source: str, reason: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Omni Desk: choose a model")
        self.source = source
        intro = QLabel(
            f"<b>The model {source} is not on this computer.</b><br>{reason}<br><br>"
            "Download it (tens of gigabytes; an interrupted download resumes where it stopped) or choose "
            f"a folder that holds it. Meanwhile the app runs the {DEMO_LABEL}.",
            self,
        )
        intro.setWordWrap(True)
        self.size_label = QLabel("Size: asking the hub…", self)
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.hide()
        self.message = QLabel("", self)
        self.message.setWordWrap(True)
        self.download_button = QPushButton("Download", self)
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
        for widget in (intro, self.size_label, self.progress, self.message):
            layout.addWidget(widget)
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

    def _demo(self) -> None:
        self.demo_chosen.emit()
        self.accept()

    def set_size(self, text: str) -> None:
        self.size_label.setText(f"Size: {text}")

    def set_progress(self, done_bytes: int, total_bytes: int, text: str) -> None:
        self.progress.show()
        self.progress.setValue(int(1000 * done_bytes / total_bytes) if total_bytes else 0)
        self.message.setText(text)

    def download_stopped(self, message: str) -> None:
        self.download_button.setEnabled(True)
        self.download_button.setText("Resume download")
        self.cancel_download_button.hide()
        self.message.setText(message)

    def show_problem(self, message: str) -> None:
        self.message.setText(message)
