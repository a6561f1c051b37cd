"""Helpers for the app tests: a GUI-thread event collector and a fake speech output."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QThread, Slot

from events import AudioChunk

FAST = {"max_text_tokens": 6, "max_codec_frames": 4, "first_chunk_frames": 1, "chunk_frames": 2}
SHORT_PROMPT = "You are a test assistant."


class Collector(QObject):
    """Lives in the GUI thread; its slots record what the worker's signals carry, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, tuple[Any, ...]]] = []

    def of(self, name: str) -> list[tuple[Any, ...]]:
        return [args for kind, args in self.events if kind == name]

    @Slot(object)
    def loaded(self, info: object) -> None:
        self.events.append(("loaded", (info,)))

    @Slot(str)
    def load_failed(self, message: str) -> None:
        self.events.append(("load_failed", (message,)))

    @Slot()
    def load_cancelled(self) -> None:
        self.events.append(("load_cancelled", ()))

    @Slot(str)
    def status(self, message: str) -> None:
        self.events.append(("status", (message,)))

    @Slot(int, str)
    def text_delta(self, turn_id: int, text: str) -> None:
        self.events.append(("text_delta", (turn_id, text)))

    @Slot(int, object)
    def turn_finished(self, turn_id: int, stats: object) -> None:
        self.events.append(("turn_finished", (turn_id, stats)))

    @Slot(int, str)
    def turn_failed(self, turn_id: int, message: str) -> None:
        self.events.append(("turn_failed", (turn_id, message)))

    @Slot(int, str)
    def truncated(self, turn_id: int, text: str) -> None:
        self.events.append(("truncated", (turn_id, text)))

    @Slot(str, str)
    def configured(self, speaker: str, prompt: str) -> None:
        self.events.append(("configured", (speaker, prompt)))

    @Slot(str, str)
    def connection(self, kind: str, message: str) -> None:
        self.events.append(("connection", (kind, message)))

    def watch(self, worker: Any) -> None:
        for name in (
            "loaded", "load_failed", "load_cancelled", "status", "text_delta", "turn_finished",
            "turn_failed", "truncated", "configured", "connection",
        ):  # fmt: skip
            getattr(worker, name).connect(getattr(self, name))


class FakeSpeaker:
    """A speech output that keeps what it is given (the playback ring buffer's edge)."""

    def __init__(self) -> None:
        self.chunks: list[AudioChunk] = []
        self.started: list[int] = []
        self.finished: list[int] = []
        self.on_gui_thread: set[bool] = set()
        self.on_write: Any = None

    def start_turn(self, turn_id: int) -> None:
        self.started.append(turn_id)

    def write(self, chunk: AudioChunk) -> bool:
        app = QCoreApplication.instance()
        self.on_gui_thread.add(app is not None and QThread.currentThread() == app.thread())
        self.chunks.append(chunk)
        if self.on_write is not None:
            self.on_write(chunk)
        return True

    def finish_turn(self, turn_id: int) -> None:
        self.finished.append(turn_id)


class ScriptedInput:
    """A recorded audio input: the test posts events as the audio thread would."""

    def __init__(self) -> None:
        self.on_event: Any = None
        self.calls: list[tuple[str, Any]] = []

    def start(self, on_event: Any) -> None:
        self.on_event = on_event
        self.calls.append(("start", None))

    def stop(self) -> None:
        self.calls.append(("stop", None))

    def set_mode(self, mode: str) -> None:
        self.calls.append(("mode", mode))

    def set_muted(self, muted: bool) -> None:
        self.calls.append(("muted", muted))

    def press(self) -> None:
        self.calls.append(("press", None))

    def release(self) -> None:
        self.calls.append(("release", None))

    def level_dbfs(self) -> float:
        return -90.0

    def post_from_thread(self, *events: object) -> None:
        """Deliver events from another thread, like the audio loop does."""
        import threading

        def send() -> None:
            for event in events:
                self.on_event(event)

        thread = threading.Thread(target=send, name="audio-loop")
        thread.start()
        thread.join()


class FakePlayer(FakeSpeaker):
    """A player whose turn keeps "playing" until `drain()`; `flush` reports `heard` samples."""

    def __init__(self, heard: int = 1920) -> None:
        super().__init__()
        self.heard = heard
        self.flushed: list[int | None] = []
        self._playing: int | None = None

    def start_turn(self, turn_id: int) -> None:
        super().start_turn(turn_id)
        self._playing = turn_id

    def flush(self, turn_id: int | None = None) -> int:
        self.flushed.append(turn_id)
        if turn_id is None or turn_id == self._playing:
            self._playing = None
        return self.heard

    def speaking_turn(self) -> int | None:
        return self._playing

    def played_samples(self, turn_id: int) -> int:
        return self.heard

    def drain(self) -> None:
        self._playing = None

    def level_dbfs(self) -> float:
        return -90.0

    def stop(self) -> None:
        self._playing = None


def engine_of(client: Any) -> Any:
    """The `model.engine.Engine` behind an in-process engine client (tests that bring a loader)."""
    return client.worker.engine
