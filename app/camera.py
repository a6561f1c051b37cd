"""The webcam (or a video file standing in for it), read by opencv in its own thread; the same
thread and store serve any visual source that gives RGB frames (the shared screen: a `FrameReader`).

Frames are timestamped on `time.perf_counter()`, the clock the microphone uses, and kept for the
last `history_s` seconds at `store_fps`, downscaled, so a user turn can take the frames it spans.
The newest full-size frame is there for the preview. A camera that cannot open gives
`DeviceUnavailable("camera", name, reason)`, one that fails mid-stream `DeviceLost("camera", name)`,
once per outage; the thread retries with back-off (the conversation goes on without video) and says
`DeviceRestored` when frames flow again.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from events import DeviceLost, DeviceRestored, DeviceUnavailable
from worker_thread import WorkerThread

log = logging.getLogger(__name__)

STORE_SLACK = 0.75  # a frame a little early for the store rate still counts (capture jitter)


@dataclass(frozen=True)
class CameraConfig:
    """`source`: a camera index, part of a camera's name, or a video file (played in real time)."""

    source: int | str = 0
    width: int = 640
    height: int = 480
    fps: float = 15.0
    history_s: float = 60.0
    store_fps: float = 4.0
    store_max_pixels: int = 320 * 240
    retry_min_s: float = 0.5
    retry_max_s: float = 5.0


@dataclass(frozen=True, slots=True)
class CameraFrame:
    rgb: np.ndarray  # (h, w, 3) uint8
    time_s: float
    index: int


class CameraError(RuntimeError):
    """A camera that cannot be opened; the message names it."""


class SourceEnded(CameraError):
    """A source gone for good (a shared window closed): capture stops with status "ended"."""


class FrameReader(Protocol):
    """One opened visual source. `read()` gives the next (h, w, 3) uint8 RGB frame or raises
    CameraError; `period_s` paces the reads (0: the device delivers at its own rate)."""

    period_s: float

    def read(self) -> np.ndarray: ...
    def close(self) -> None: ...


def list_cameras() -> list[tuple[int, str]]:
    """(index, name) of the video capture devices the system lists (Linux: video4linux)."""
    root = Path("/sys/class/video4linux")
    cameras = []
    for node in sorted(root.glob("video*")) if root.is_dir() else []:
        name_file = node / "name"
        name = name_file.read_text().strip() if name_file.is_file() else node.name
        cameras.append((int(node.name.removeprefix("video")), name))
    return cameras


def resolve_source(source: int | str) -> int | str:
    """A camera index or a video file path for opencv; CameraError if a name matches nothing."""
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return int(source)
    if Path(source).is_file():
        return str(source)
    matches = [index for index, name in list_cameras() if source.lower() in name.lower()]
    if not matches:
        listed = ", ".join(f"{i}: {n}" for i, n in list_cameras()) or "none"
        raise CameraError(f"no camera or video file matches {source!r} (cameras: {listed})")
    return matches[0]


def quiet_cv2() -> Any:
    """opencv, with its own warnings off: a missing camera is reported once, in words, by us (its
    "can't open camera by index" would otherwise flood stderr at every retry)."""
    import cv2
    from cv2.utils import logging as cv2_logging

    cv2_logging.setLogLevel(cv2_logging.LOG_LEVEL_ERROR)
    return cv2


def downscale(rgb: np.ndarray, max_pixels: int) -> np.ndarray:
    import cv2

    height, width = rgb.shape[:2]
    if height * width <= max_pixels:
        return rgb
    scale = (max_pixels / (height * width)) ** 0.5
    return cv2.resize(rgb, (int(width * scale), int(height * scale)), interpolation=cv2.INTER_AREA)


class Camera:
    """Capture thread plus the recent frames; `start()` returns at once, frames arrive when they can."""

    def __init__(
        self,
        config: CameraConfig,
        on_event: Callable[[Any], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        *,
        open_reader: Callable[[], FrameReader] | None = None,
        kind: str = "camera",
    ) -> None:
        """`open_reader` opens another visual source than opencv's (raising CameraError); `kind`
        names it in the device events."""
        self.config = config
        self.open_reader = open_reader or (lambda: VideoReader(config))
        self.kind = kind
        self.on_event = on_event or (lambda _event: None)
        self.clock = clock
        capacity = max(2, int(config.history_s * config.store_fps))
        self._stored: collections.deque[CameraFrame] = collections.deque(maxlen=capacity)
        self._latest: CameraFrame | None = None
        self._lock = threading.Lock()
        self._worker = WorkerThread("camera")
        self._stop = self._worker.stop_requested
        self.status = "off"
        self.message = ""
        self.frames_read = 0
        self.failures = 0

    @property
    def name(self) -> str:
        return str(self.config.source)

    def start(self) -> None:
        self._worker.start(self._run)

    def stop(self) -> None:
        self._worker.stop()
        self.status = "off"

    def __enter__(self) -> Camera:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def latest(self) -> CameraFrame | None:
        """The newest frame at full size (for the preview and for snapshots)."""
        with self._lock:
            return self._latest

    def frames_between(self, start_s: float, end_s: float) -> list[CameraFrame]:
        """Stored (downscaled) frames with `start_s <= time_s <= end_s`, oldest first."""
        with self._lock:
            return [f for f in self._stored if start_s <= f.time_s <= end_s]

    def _run(self) -> None:
        """Capture, and after a failure try again with back-off: a camera that never opened is
        reported once as unavailable, one that stopped as lost, and either as restored when it works."""
        delay = self.config.retry_min_s
        while not self._stop.is_set():
            try:
                self._capture()
                delay = self.config.retry_min_s
            except SourceEnded as error:
                self.status, self.message = "ended", str(error)
                return
            except Exception as error:  # CameraError, or a reader's own failure: reported, retried
                if not isinstance(error, CameraError):
                    log.exception("the %s's capture failed", self.kind)
                self.failures += 1
                if self.status != "failed":
                    log.warning("%s", error)
                    if self.frames_read:
                        self.on_event(DeviceLost(self.kind, self.name))
                    else:
                        self.on_event(DeviceUnavailable(self.kind, self.name, str(error)))
                self.status, self.message = "failed", str(error)
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self.config.retry_max_s)

    def _capture(self) -> None:
        """Open the source and read until it fails or `stop()`; raises CameraError on failure."""
        reader = self.open_reader()
        try:
            if self.status == "failed":
                self.on_event(DeviceRestored(self.kind, self.name))
            self.status, self.message = "running", ""
            last_store = -1e9
            next_frame = self.clock()
            while not self._stop.is_set():
                rgb = reader.read()
                now = self.clock()
                frame = CameraFrame(rgb, now, self.frames_read)
                self.frames_read += 1
                with self._lock:
                    self._latest = frame
                    if now - last_store >= STORE_SLACK / self.config.store_fps:
                        small = downscale(frame.rgb, self.config.store_max_pixels)
                        self._stored.append(CameraFrame(small, now, frame.index))
                        last_store = now
                if reader.period_s:  # a file plays in real time, as a camera would deliver it
                    next_frame += reader.period_s
                    self._stop.wait(max(0.0, next_frame - self.clock()))
        finally:
            reader.close()


class VideoReader:
    """A camera or a video file through opencv; a file is paced at its own frame rate."""

    def __init__(self, config: CameraConfig) -> None:
        cv2 = self._cv2 = quiet_cv2()
        self.name = str(config.source)
        source = resolve_source(config.source)
        self.is_file = isinstance(source, str)
        self.capture = cv2.VideoCapture(source)
        if not self.capture.isOpened():
            self.capture.release()
            raise CameraError(f"camera {self.name!r} cannot be opened (missing, or busy in another program)")
        if not self.is_file:
            self.capture.set(cv2.CAP_PROP_FRAME_WIDTH, config.width)
            self.capture.set(cv2.CAP_PROP_FRAME_HEIGHT, config.height)
            self.capture.set(cv2.CAP_PROP_FPS, config.fps)
        file_fps = self.capture.get(cv2.CAP_PROP_FPS) if self.is_file else 0.0
        self.period_s = 1.0 / (file_fps if file_fps > 0 else config.fps) if self.is_file else 0.0

    def read(self) -> np.ndarray:
        ok, bgr = self.capture.read()
        if not ok or bgr is None:
            why = "the video file ended" if self.is_file else "it stopped delivering frames"
            raise CameraError(f"camera {self.name!r} failed: {why}")
        return self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self.capture.release()
