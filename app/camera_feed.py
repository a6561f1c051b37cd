"""The app's camera: owns a `Camera` while it is on, polls its newest frame for the preview on the
Qt thread, and says what state it is in.

The capture thread opens and reads the device; stopping (which joins that thread) happens on a
short-lived thread, so the Qt thread never waits on a camera. A camera that keeps failing retries
by itself; only the first failure of each outage is reported, so the banner and the journal get
one message, not one per retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from app.camera import Camera, CameraConfig, CameraFrame
from app.config import CameraSettings
from worker_thread import Errands

log = logging.getLogger(__name__)

PREVIEW_FPS = 15


def camera_choices() -> list[tuple[str, str]]:
    """(label, source) for each camera the system lists."""
    from app.camera import list_cameras

    return [(f"{index}: {name}", str(index)) for index, name in list_cameras()]


class FrameFeed(QObject):
    """A visual source (`Camera`, which also reads the shared screen) while it is on: its newest
    frame for the preview, its state in words. `frames_between` and `latest` answer from any thread
    (nothing while it is off)."""

    frame = Signal(object)  # (h, w, 3) uint8 RGB, each new frame once, at most PREVIEW_FPS a second
    status_changed = Signal(str)  # what the window should say about the source ("" when it works)

    def __init__(self, on_event: Callable[[object], None], what: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.on_event = on_event
        self.what = what  # "camera" or "screen": how the status names the source
        self.camera: Camera | None = None
        self._shown: CameraFrame | None = None
        self._status = ""
        self._stops = Errands(f"{what}-stop")
        self._timer = QTimer(self)
        self._timer.setInterval(1000 // PREVIEW_FPS)
        self._timer.timeout.connect(self._tick)

    @property
    def on(self) -> bool:
        return self.camera is not None

    def run(self, camera: Camera) -> None:
        """Start `camera` (built with this feed's `_on_camera_event`); returns at once."""
        self.camera = camera
        camera.start()
        self._timer.start()
        self._tick()

    def stop(self) -> None:
        """Turn the source off; it is released on a short-lived thread."""
        camera, self.camera = self.camera, None
        self._timer.stop()
        self._shown = None
        self._set_status("")
        if camera is not None:
            self._stops.run(camera.stop)

    def close(self, timeout_s: float = 1.0) -> None:
        self.stop()
        self._stops.join(timeout_s)

    def frames_between(self, start_s: float, end_s: float) -> list[CameraFrame]:
        camera = self.camera
        return camera.frames_between(start_s, end_s) if camera is not None else []

    def latest(self) -> CameraFrame | None:
        camera = self.camera
        return camera.latest() if camera is not None else None

    def _on_camera_event(self, event: Any) -> None:
        """From the capture thread (the camera reports each outage once)."""
        self.on_event(event)

    def _tick(self) -> None:
        camera = self.camera
        if camera is None:
            return
        if camera.status == "running":
            self._set_status("")
        elif camera.status in ("failed", "ended"):
            again = "; trying again" if camera.status == "failed" else ""
            self._set_status(f"{camera.message}{again}")
        else:
            self._set_status(f"opening {self.what} {camera.name}…")
        frame = camera.latest()
        if frame is not None and frame is not self._shown and camera.status == "running":
            self._shown = frame
            self.frame.emit(frame.rgb)

    def _set_status(self, text: str) -> None:
        if text != self._status:
            self._status = text
            self.status_changed.emit(text)


class CameraFeed(FrameFeed):
    """The webcam as the settings name it; `start(source)` switches to another one."""

    def __init__(
        self, settings: CameraSettings, on_event: Callable[[object], None], parent: QObject | None = None
    ) -> None:
        super().__init__(on_event, "camera", parent)
        self.settings = settings

    @property
    def source(self) -> str:
        return self.settings.source

    def start(self, source: str | None = None) -> None:
        """Turn the camera on (`source` replaces the configured one); returns at once."""
        if source is not None and source != self.settings.source:
            self.stop()
            self.settings = replace(self.settings, source=source)
        if self.camera is not None:
            return
        s = self.settings
        config = CameraConfig(source=s.source, width=s.width, height=s.height, fps=s.fps)
        self.run(Camera(config, self._on_camera_event))
