"""The first-run flow: the configured model is not on disk, so offer to download it (size first,
progress, resumable), to choose a folder, or to keep the demo model that is already starting.

Downloads run on a daemon thread (`app.download.DownloadJob`); a timer on the Qt thread reads their
progress, so nothing here waits on the network.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtWidgets import QWidget

from app.model_problem import describe, plain_hub_error
from ui.first_run import FirstRunDialog

DEMO_SOURCE = "demo"  # `[model] source` when the user chose to keep the demo model


class FirstRun(QObject):
    """`load(source, demo)` starts a load; `demo_in_use()` says whether the demo is loaded or
    loading; `remember(source=..., device=...)` changes the model settings, for now and later."""

    model_found = Signal(str)
    model_missing = Signal(str, str)  # source, why

    def __init__(
        self,
        window: QWidget,
        *,
        load: Callable[[str, bool], None],
        demo_in_use: Callable[[], bool],
        remember: Callable[..., None],
    ) -> None:
        super().__init__(window)
        self.window = window
        self._load = load
        self._demo_in_use = demo_in_use
        self._remember = remember
        self._source = ""
        self.dialog: FirstRunDialog | None = None
        self.job: Any = None
        self.size_job: Any = None
        self._timer = QTimer(self)
        self._timer.setInterval(500)
        self._timer.timeout.connect(self.poll)
        self.model_found.connect(lambda source: self._load(source, False))
        self.model_missing.connect(self._on_model_missing)

    def look_for(self, source: str) -> None:
        """Load `source` when it is on disk; otherwise start the demo and ask (the lookup runs off
        the Qt thread: the hub library's import and cache scan take a noticeable moment)."""
        threading.Thread(target=self._look_for, args=(source,), name="model-lookup", daemon=True).start()

    def _look_for(self, source: str) -> None:
        try:
            from model.loading import ModelLoadError, check_checkpoint, resolve_checkpoint

            check_checkpoint(resolve_checkpoint(source))
        except ModelLoadError as error:
            self.model_missing.emit(source, str(error))
            return
        except Exception as error:
            self.model_missing.emit(source, f"{type(error).__name__}: {error}")
            return
        self.model_found.emit(source)

    @Slot(str, str)
    def _on_model_missing(self, source: str, reason: str) -> None:
        self._load("", True)  # usable at once; the dialog offers the real model
        self.show(source, reason)

    def show(self, source: str, reason: str) -> FirstRunDialog:
        """The dialog for `source` failing with `reason` (the raw message, shown under Details)."""
        self._source = source
        problem = describe(source, reason)
        if self.dialog is not None:
            self.dialog.show_problem(problem.headline, problem.details)
            self.dialog.show()
            return self.dialog
        dialog = FirstRunDialog(
            source,
            problem.headline,
            problem.details,
            downloadable=problem.downloadable,
            offer_cpu=problem.device_failed,
            demo_running=self._demo_in_use(),
            parent=self.window,
        )
        dialog.cpu_chosen.connect(self._use_cpu)
        dialog.demo_chosen.connect(self._use_demo)
        dialog.folder_chosen.connect(self.use_folder)
        dialog.download_requested.connect(lambda: self._start_download(source))
        dialog.download_cancelled.connect(self._stop_download)
        dialog.finished.connect(self._closed)
        self.dialog = dialog
        dialog.open()
        if problem.downloadable:
            self._ask_size(source)
        return dialog

    def stop(self) -> None:
        self._timer.stop()
        for job in (self.job, self.size_job):
            if job is not None:
                job.stop()

    def _ask_size(self, source: str) -> None:
        from app.download import DownloadJob
        from model.loading import is_offline

        if self.dialog is None:
            return
        if is_offline():
            self.dialog.set_size(f"unknown: {plain_hub_error('offline')}")
            return
        self.size_job = DownloadJob(source, plan_only=True)
        self._timer.start()

    def _closed(self, _result: int) -> None:
        self.dialog = None

    def _use_demo(self) -> None:
        """Keep the demo, and remember it: the dialog does not come back at the next start."""
        self._remember(source=DEMO_SOURCE)
        if not self._demo_in_use():
            self._load("", True)

    def _use_cpu(self) -> None:
        self._remember(device="cpu")
        self._load(self._source, False)

    def use_folder(self, folder: str) -> None:
        from model.loading import ModelLoadError, check_checkpoint

        try:
            check_checkpoint(Path(folder))
        except ModelLoadError as error:
            if self.dialog is not None:
                self.dialog.show_problem(str(error))
            return
        self._remember(source=folder)
        if self.dialog is not None:
            self.dialog.accept()
        self._load(folder, False)

    def _start_download(self, source: str) -> None:
        from app.download import DownloadJob

        self.job = DownloadJob(source)
        self._timer.start()

    def _stop_download(self) -> None:
        if self.job is not None:
            self.job.stop()
        if self.dialog is not None:
            self.dialog.download_stopped("Download stopped; what was fetched is kept, and it resumes.")

    def poll(self) -> None:
        """Show the size and the download's progress; load the model once it is all there."""
        from app.download import human_bytes

        dialog, job, size = self.dialog, self.job, self.size_job
        if dialog is not None and size is not None and size.state in ("planned", "failed"):
            if size.plan is not None:
                cached = (
                    f", {human_bytes(size.plan.cached_bytes)} already here" if size.plan.cached_bytes else ""
                )
                dialog.set_size(f"{human_bytes(size.plan.total_bytes)} in {size.plan.files} files{cached}")
            else:
                dialog.set_size(f"unknown: {plain_hub_error(size.error)}", size.error)
            self.size_job = None
        if job is not None and dialog is not None and job.plan is not None:
            total, done = job.plan.total_bytes, job.done_bytes()
            dialog.set_size(f"{human_bytes(total)} in {job.plan.files} files")
            dialog.set_progress(done, total, f"{human_bytes(done)} of {human_bytes(total)}")
        if job is not None and job.state == "failed":
            self.job = None
            if dialog is not None:
                dialog.download_stopped(f"The download failed: {plain_hub_error(job.error)}.")
                dialog.message.setToolTip(job.error)
        elif job is not None and job.state == "done":
            self.job = None
            if dialog is not None:
                dialog.accept()
            self._load(str(job.path), False)
        if self.job is None and self.size_job is None:
            self._timer.stop()
