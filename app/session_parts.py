"""What the session drives besides the engine: the audio input, the playback and the camera, as the
small interfaces the session needs of them (the real ones and the tests' recorded ones fit); how
their events reach the Qt thread, and what the user is told when a device fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from PySide6.QtCore import QObject, Signal

from events import DeviceLost, DeviceRestored, DeviceUnavailable, Problem, ScreenSharingChanged


class AudioInput(Protocol):
    """Microphone → echo canceller → turn detector and barge-in monitor, on the audio thread.

    `start` gets the sink for `SpeechStarted`, `SpeechEnded`, `BargeIn` and `DeviceLost`; it is
    called from the audio thread."""

    def start(self, on_event: Callable[[object], None]) -> None: ...
    def stop(self) -> None: ...
    def set_mode(self, mode: str) -> None: ...
    def set_muted(self, muted: bool) -> None: ...
    def press(self) -> None: ...
    def release(self) -> None: ...


class Playback(Protocol):
    """The session's side of the player (the engine worker writes to it). `flush` may wait for the
    audio callback (up to half a second when the device is stuck), so the session calls it off the
    Qt thread; `played_samples` answers at once."""

    def flush(self, turn_id: int | None = None) -> int: ...
    def speaking_turn(self) -> int | None: ...
    def played_samples(self, turn_id: int) -> int: ...


class FrameSource(Protocol):
    """The camera's side the session reads (`app.camera.Camera` fits): stored frames of a time span
    and the newest full-size frame; both answer at once from any thread."""

    def frames_between(self, start_s: float, end_s: float) -> list[Any]: ...
    def latest(self) -> Any: ...


class AudioEvents(QObject):
    """Carries audio-thread events to the Qt thread: `post` may be called from any thread."""

    arrived = Signal(object)

    def post(self, event: object) -> None:
        self.arrived.emit(event)


DEVICE_WORDS = {"input": "microphone", "output": "speaker", "camera": "camera", "screen": "screen capture"}


def device_problem(event: DeviceLost | DeviceUnavailable | DeviceRestored) -> str:
    """What the user is told when a device fails (nothing when it is back: the window says so)."""
    what = DEVICE_WORDS.get(event.kind, event.kind)
    if isinstance(event, DeviceLost):
        return f"The {what} {event.name!r} stopped working; it will be used again as soon as it is back."
    if isinstance(event, DeviceUnavailable):
        fallback = " Replies are shown as text meanwhile." if event.kind == "output" else ""
        return (
            f"The {what} {event.name!r} cannot be opened ({event.reason}). Trying again, and using it "
            f"as soon as it appears; you can pick another one in the window.{fallback}"
        )
    return ""


def device_reports(event: object) -> list[object]:
    """What the session passes on of a device's or the screen share's event: the event, and what
    the user is told (nothing for any other event)."""
    if isinstance(event, DeviceLost | DeviceUnavailable | DeviceRestored):
        problem = device_problem(event)
        return [event, Problem(problem)] if problem else [event]
    if isinstance(event, ScreenSharingChanged):
        return [event, Problem(event.reason)] if event.reason else [event]
    return []
