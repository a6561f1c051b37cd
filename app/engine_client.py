"""The one interface the session drives an engine through, wherever the engine runs.

`EngineClient` is implemented by `RealtimeEngine` (our `omnidesk serve`, as a child process or
remote, over the Realtime protocol), `VllmOmniEngine` (a vLLM-Omni server's chat completions) and
`EngineThread` (the engine in this process, for tests that bring their own loader). Every one
reports through the same `EngineSignals`, emitted from its own threads and received by the
session's slots on the Qt thread; reply audio goes straight to the `SpeechOutput`, never through Qt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from PySide6.QtCore import QObject, Signal

from app.recording import Recording
from events import AudioChunk, Message


@dataclass(frozen=True)
class LoadRequest:
    """What to load; `source` empty with `demo` set means the demo checkpoint."""

    source: str
    demo: bool = False
    device: str = "auto"
    dtype: str = "auto"
    quantization: str = "auto"
    speaker: str = "ethan"
    system_prompt: str = ""
    speak: bool = True
    engine_options: dict[str, Any] = field(default_factory=dict)  # extra EngineSettings fields


@dataclass(frozen=True)
class ModelInfo:
    """What the status bar shows about the loaded model."""

    source: str
    path: str
    device: str
    dtype: str
    quantization: str
    is_demo: bool
    can_speak: bool
    weight_bytes: int
    load_s: float

    @staticmethod
    def of(info: dict[str, Any]) -> ModelInfo:
        """From the server's `omnidesk.model_status` model description (missing fields left blank)."""
        return ModelInfo(
            source=str(info.get("source", "")),
            path=str(info.get("path", "")),
            device=str(info.get("device", "?")),
            dtype=str(info.get("dtype", "?")),
            quantization=str(info.get("quantization", "?")),
            is_demo=bool(info.get("is_demo", False)),
            can_speak=bool(info.get("can_speak", True)),
            weight_bytes=int(info.get("weight_bytes", 0) or 0),
            load_s=float(info.get("load_s", 0.0) or 0.0),
        )


class SpeechOutput(Protocol):
    """Where reply audio is written (`audio_io.playback.Player` fits)."""

    def start_turn(self, turn_id: int) -> None: ...
    def write(self, chunk: AudioChunk) -> bool: ...
    def finish_turn(self, turn_id: int) -> None: ...


class EngineSignals(QObject):
    """What an engine reports; connect them to `@Slot` methods of Qt-thread objects."""

    status = Signal(str)
    loaded = Signal(object)  # ModelInfo
    load_failed = Signal(str)
    load_cancelled = Signal()
    text_delta = Signal(int, str)
    first_audio = Signal(int, float)  # turn id, perf_counter time the first chunk was written
    turn_finished = Signal(int, object)  # turn id, TurnStats
    turn_failed = Signal(int, str)
    truncated = Signal(int, str)  # turn id, the text the user heard
    configured = Signal(str, str)  # speaker, system prompt
    conversation_reset = Signal()
    connection = Signal(str, str)  # "lost" | "restored", what happened (remote and child engines)


class EngineClient(Protocol):
    """The session's side of an engine. Every call returns at once; results come as signals."""

    signals: EngineSignals
    recording: Recording

    def load(self, request: LoadRequest) -> None: ...
    def cancel_load(self) -> None: ...
    def respond(self, turn_id: int, turn: Any) -> None: ...
    def cancel(self, turn_id: int) -> None: ...
    def cancel_all(self) -> None: ...
    def truncate(self, turn_id: int, heard_samples: int) -> None: ...
    def configure(self, speaker: str, system_prompt: str) -> None: ...
    def new_conversation(self) -> None: ...
    def listen(self, audio: Any, frames: Any = None, fps: float = 0.0) -> None: ...
    def abandon(self) -> None: ...
    def history(self) -> list[Message]: ...
    def set_speech(self, speech: SpeechOutput | None) -> None: ...
    def stop(self, timeout_s: float = 5.0) -> bool: ...
