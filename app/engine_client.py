"""The one interface the session drives an engine through, wherever the engine runs.

`EngineClient` is implemented by `RealtimeEngine` (our `omnidesk serve`, as a child process or
remote, over the Realtime protocol), `VllmOmniEngine` (a vLLM-Omni server's chat completions) and
`EngineThread` (the engine in this process, for tests that bring their own loader). Every one
reports through the same `EngineSignals`, emitted from its own threads and received by the
session's slots on the Qt thread; reply audio goes straight to the `SpeechOutput`, never through Qt.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QObject, Signal

from app.config import EngineConnection
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
    transcribe: bool = True  # the user's words of each spoken turn come back (`UserTranscript`)
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
    """What an engine reports, as the dataclasses of `events.py` (`EngineStatus`, `ModelLoaded`,
    `TextDelta`, `FirstAudio`, `TurnFinished`, `EngineError`, `ReplyTruncated`, `UserTranscript`, ...):
    one queued signal, emitted from the client's threads and handled on the Qt thread."""

    reported = Signal(object)

    def report(self, event: object) -> None:
        self.reported.emit(event)


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
    def set_tools(self, tools: tuple[Any, ...]) -> None: ...  # model.tool_format.ToolSpec, kept across loads
    def new_conversation(self) -> None: ...
    def restore(self, exchanges: list[Any]) -> None: ...  # past `Exchange`s, put back without replies
    def listen(self, audio: Any, frames: Any = None, fps: float = 0.0) -> None: ...
    def abandon(self) -> None: ...
    def speculate(self) -> None: ...  # the user paused, all of the turn sent: compute the reply now
    def answer_aside(self, key: int, turn: Any) -> None: ...  # text answer, out of the conversation
    def say_notice(
        self, key: int, request: str
    ) -> None: ...  # spoken, out of the conversation (turn id -key)
    def cancel_notice(self, key: int) -> None: ...
    def history(self) -> list[Message]: ...
    def set_speech(self, speech: SpeechOutput | None) -> None: ...
    def stop(self, timeout_s: float = 5.0) -> bool: ...


def make_engine(
    settings: EngineConnection,
    speech: Any,
    *,
    loader: Callable[..., Any] | None = None,
    demo_dir: Callable[[], Path] | None = None,
) -> EngineClient:
    """The engine client for the settings: the app's own engine process (no URL), a remote Omni Desk
    server (ws:// or wss://) or a vLLM-Omni server (http:// or https://). A `loader` (tests and
    benches) runs the engine in this process instead."""
    if loader is not None or demo_dir is not None:
        from app.engine_worker import EngineThread, EngineWorker

        return EngineThread(EngineWorker(speech, loader=loader, demo_dir=demo_dir))
    key = os.environ.get(settings.api_key_env) or None
    if settings.url.startswith(("http://", "https://")):
        from app.vllm_omni_client import VllmOmniEngine

        return VllmOmniEngine(speech, url=settings.url, api_key=key)
    from app.realtime_client import RealtimeEngine

    return RealtimeEngine(speech, url=settings.url or None, api_key=key)
