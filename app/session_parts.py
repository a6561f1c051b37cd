"""What the session drives besides the engine: the audio input, the playback and the camera, as the
small interfaces the session needs of them (the real ones and the tests' recorded ones fit); how
their events reach the Qt thread, and what the user is told when a device fails."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from PySide6.QtCore import QObject, Signal

from events import DeviceLost, DeviceRestored, DeviceUnavailable, TurnLatency


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


class LatencyBook:
    """The latest turns' timings, stamped as each reply goes (Qt thread)."""

    KEPT = 32

    def __init__(self) -> None:
        self._turns: dict[int, TurnLatency] = {}

    def __contains__(self, turn_id: object) -> bool:
        return turn_id in self._turns

    def start(self, turn_id: int, end_of_speech_s: float) -> None:
        self._turns[turn_id] = TurnLatency(turn_id, end_of_speech_s)
        for old in [t for t in self._turns if t < turn_id - self.KEPT]:
            del self._turns[old]

    def stamp(self, turn_id: int, **changes: Any) -> TurnLatency | None:
        current = self._turns.get(turn_id)
        if current is not None:
            current = self._turns[turn_id] = replace(current, **changes)
        return current

    def first_text(self, turn_id: int, now_s: float) -> bool:
        """Stamp the reply's first text; True only the first time."""
        current = self._turns.get(turn_id)
        if current is None or current.first_text_s is not None:
            return False
        self.stamp(turn_id, first_text_s=now_s)
        return True
