"""Helpers for the app tests: a GUI-thread event collector and a fake speech output."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QThread, Slot

from events import (
    AudioChunk,
    ConversationReset,
    EngineConfigured,
    EngineConnection,
    EngineError,
    EngineStatus,
    FirstAudio,
    LoadCancelled,
    LoadFailed,
    ModelLoaded,
    Problem,
    ReplyTruncated,
    SpeechStarted,
    StateChanged,
    TextDelta,
    TurnFinished,
    TurnLatency,
    UserTranscript,
    UserTurnSent,
)

FAST = {"max_text_tokens": 6, "max_codec_frames": 4, "first_chunk_frames": 1, "chunk_frames": 2}
SHORT_PROMPT = "You are a test assistant."


def named(event: object) -> tuple[str, tuple[Any, ...]]:
    """An event as (name, fields): the names the tests read reports by."""
    name = {
        EngineStatus: "status", ModelLoaded: "loaded", LoadFailed: "load_failed",
        LoadCancelled: "load_cancelled", TextDelta: "text_delta", FirstAudio: "first_audio",
        TurnFinished: "turn_finished", EngineError: "turn_failed", ReplyTruncated: "truncated",
        EngineConfigured: "configured", EngineConnection: "connection", UserTranscript: "transcript",
    }.get(type(event), type(event).__name__)  # fmt: skip
    if isinstance(event, EngineConnection):
        return name, ("lost" if event.lost else "restored", event.message)
    return name, tuple(getattr(event, f.name) for f in fields(event))  # type: ignore[arg-type]


SESSION_NAMES = {
    StateChanged: "state_changed", UserTurnSent: "user_turn", TextDelta: "reply_text",
    TurnFinished: "reply_finished", ReplyTruncated: "reply_interrupted", TurnLatency: "latency",
    Problem: "error", ModelLoaded: "model_ready", ConversationReset: "conversation_reset",
    EngineConfigured: "configured", SpeechStarted: "speech_started", EngineStatus: "status",
}  # fmt: skip


def session_named(event: object) -> tuple[str, tuple[Any, ...]]:
    """A session report as (name, fields), by the names the tests read them by."""
    name = SESSION_NAMES.get(type(event), type(event).__name__)
    if isinstance(event, TurnLatency):
        return name, (event,)
    if isinstance(event, UserTurnSent):  # the fields the session's old signal carried
        return name, (event.turn_id, event.text, event.audio_s)
    return name, tuple(getattr(event, f.name) for f in fields(event))  # type: ignore[arg-type]


def on_report(session: Any, name: str, slot: Any) -> None:
    """Call `slot(*fields)` for each of the session's reports called `name`."""

    def check(event: object) -> None:
        kind, args = session_named(event)
        if kind == name:
            slot(*args)

    session.reported.connect(check)


class Collector(QObject):
    """Lives in the GUI thread; records what an engine client reports, in order, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, tuple[Any, ...]]] = []

    def of(self, name: str) -> list[tuple[Any, ...]]:
        return [args for kind, args in self.events if kind == name]

    @Slot(object)
    def on_event(self, event: object) -> None:
        self.events.append(named(event))

    def watch(self, signals: Any) -> None:
        signals.reported.connect(self.on_event)


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
