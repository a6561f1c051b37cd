"""The engine in its own thread: loads the model, then runs turns and streams their events.

`EngineWorker` lives in a QThread; the GUI talks to it through `EngineThread`, whose signals reach the
worker's slots as queued calls, so they run in order in the worker's thread. The worker's signals
reach `@Slot` methods of GUI objects as queued calls too. Audio never crosses into the GUI thread:
the worker writes each chunk straight into the speech output (the playback ring buffer). Cancelling
a turn or a load only sets a `threading.Event`, which is safe from any thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal, Slot

from events import AudioChunk, EngineError, TextDelta, TurnFinished, TurnStats

log = logging.getLogger(__name__)


class SpeechOutput(Protocol):
    """Where the worker writes speech (`audio_io.playback.Player` fits)."""

    def start_turn(self, turn_id: int) -> None: ...
    def write(self, chunk: AudioChunk) -> bool: ...
    def finish_turn(self, turn_id: int) -> None: ...


Loader = Callable[..., Any]  # model.loading.load_model's signature; returns a LoadedModel


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


@dataclass
class TurnRecord:
    """The audio of one turn for export: the user's (16 kHz int16) and the assistant's (24 kHz int16)."""

    turn_id: int
    user_audio: np.ndarray | None = None
    reply_chunks: list[np.ndarray] = field(default_factory=list)
    heard_samples: int | None = None  # set when the reply was cut

    @property
    def samples(self) -> int:
        user = 0 if self.user_audio is None else int(self.user_audio.size) * 3 // 2
        return user + sum(int(c.size) for c in self.reply_chunks)

    def reply_audio(self) -> np.ndarray:
        """The reply as heard, float32 in [-1, 1]."""
        audio = np.concatenate(self.reply_chunks) if self.reply_chunks else np.zeros(0, np.int16)
        audio = audio if self.heard_samples is None else audio[: self.heard_samples]
        return audio.astype(np.float32) / 32768.0


class Recording:
    """The audio of the latest turns, for export: appended by the worker, read by the Qt thread.

    Bounded by `max_audio_s` (24 kHz-equivalent seconds, both sides together): the oldest turns
    leave first, so a conversation of any length holds a fixed amount of memory."""

    def __init__(self, max_audio_s: float = 1800.0) -> None:
        self._lock = threading.Lock()
        self._turns: dict[int, TurnRecord] = {}
        self._samples = 0
        self.max_samples = int(max_audio_s * 24_000)

    def _turn(self, turn_id: int) -> TurnRecord:
        record = self._turns.get(turn_id)
        if record is None:
            record = self._turns[turn_id] = TurnRecord(turn_id)
        return record

    def _trim(self) -> None:
        while self._samples > self.max_samples and len(self._turns) > 1:
            oldest = self._turns.pop(min(self._turns))
            self._samples -= oldest.samples

    def user(self, turn_id: int, audio: np.ndarray | None) -> None:
        pcm = None if audio is None else _int16(audio)
        with self._lock:
            record = self._turn(turn_id)
            self._samples -= record.samples
            record.user_audio = pcm
            self._samples += record.samples
            self._trim()

    def reply(self, turn_id: int, pcm: np.ndarray) -> None:
        chunk = _int16(pcm)
        with self._lock:
            self._turn(turn_id).reply_chunks.append(chunk)
            self._samples += int(chunk.size)
            self._trim()

    def cut(self, turn_id: int, heard_samples: int) -> None:
        with self._lock:
            if turn_id in self._turns:
                self._turns[turn_id].heard_samples = heard_samples

    def clear(self) -> None:
        with self._lock:
            self._turns.clear()
            self._samples = 0

    @property
    def held_samples(self) -> int:
        return self._samples

    def turns(self) -> list[TurnRecord]:
        with self._lock:
            return [
                TurnRecord(t.turn_id, t.user_audio, list(t.reply_chunks), t.heard_samples)
                for _, t in sorted(self._turns.items())
            ]


def _int16(audio: np.ndarray) -> np.ndarray:
    samples = np.asarray(audio).reshape(-1)
    if samples.dtype == np.int16:
        return samples.copy()
    if np.issubdtype(samples.dtype, np.integer):
        return np.clip(samples, -32768, 32767).astype(np.int16)
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


class LoadCancelled(Exception):
    """The load was cancelled (raised from the status callback between loading stages)."""


class EngineWorker(QObject):
    """Owns the model and the `Engine`; every slot runs in the worker thread."""

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

    def __init__(
        self,
        speech: SpeechOutput | None = None,
        *,
        loader: Loader | None = None,
        demo_dir: Callable[[], Path] | None = None,
        recording: Recording | None = None,
    ) -> None:
        super().__init__()
        self.speech = speech
        self.recording = recording or Recording()
        self._loader = loader
        self._demo_dir = demo_dir
        self.engine: Any = None
        self.model_info: ModelInfo | None = None
        self.load_cancel = threading.Event()

    # -- loading ------------------------------------------------------------------------------------

    @Slot(object)
    def load(self, request: LoadRequest) -> None:
        self.load_cancel.clear()
        started = time.perf_counter()

        def say(message: str) -> None:
            if self.load_cancel.is_set():
                raise LoadCancelled
            self.status.emit(message)

        try:
            loaded = self._load(request, say)
            if self.load_cancel.is_set():
                raise LoadCancelled
            say("starting the conversation engine")
            self.engine = self._make_engine(loaded, request)
        except LoadCancelled:
            self.load_cancelled.emit()
            return
        except Exception as error:
            if self.load_cancel.is_set():
                self.load_cancelled.emit()
                return
            from model.loading import ModelLoadError

            if isinstance(error, ModelLoadError):
                self.load_failed.emit(str(error))
            else:
                log.exception("loading failed")
                self.load_failed.emit(f"loading failed: {type(error).__name__}: {error}")
            return
        self.model_info = ModelInfo(
            source=loaded.source,
            path=str(loaded.path),
            device=loaded.device,
            dtype=loaded.dtype,
            quantization=loaded.quantization,
            is_demo=loaded.is_demo,
            can_speak=bool(self.engine.can_speak and request.speak),
            weight_bytes=_weight_bytes(loaded),
            load_s=time.perf_counter() - started,
        )
        self.loaded.emit(self.model_info)

    def _load(self, request: LoadRequest, say: Callable[[str], None]) -> Any:
        source = request.source
        if request.demo:
            say("building the demo model (random weights, its speech is noise)")
            if self._demo_dir is not None:
                source = str(self._demo_dir())
            else:
                from model.demo import demo_checkpoint_dir

                source = str(demo_checkpoint_dir())
        loader = self._loader
        if loader is None:
            from model.loading import load_model

            loader = load_model
        return loader(
            source, device=request.device, dtype=request.dtype, quantization=request.quantization, status=say
        )

    def _make_engine(self, loaded: Any, request: LoadRequest) -> Any:
        from model.engine import VOICE_CHAT_PROMPT, Engine, EngineSettings

        options: dict[str, Any] = {}
        if loaded.is_demo:
            from model.demo import DEMO_MAX_CODEC_FRAMES, DEMO_MAX_TEXT_TOKENS

            options = {"max_text_tokens": DEMO_MAX_TEXT_TOKENS, "max_codec_frames": DEMO_MAX_CODEC_FRAMES}
        options.update(request.engine_options)
        settings = EngineSettings(
            speaker=request.speaker,
            system_prompt=request.system_prompt or VOICE_CHAT_PROMPT,
            speak=request.speak,
            **options,
        )
        return Engine(loaded.model, loaded.processor, settings)

    # -- turns --------------------------------------------------------------------------------------

    @Slot(int, object, object)
    def respond(self, turn_id: int, turn: Any, cancel: threading.Event) -> None:
        """Run one turn. `turn` is a `UserTurn`, or a callable that builds one here, off the Qt
        thread (a spoken turn picks its camera clip that way)."""
        if callable(turn):
            turn = turn()
        if self.engine is None:
            self.turn_failed.emit(turn_id, "the model is not loaded yet")
            return
        if cancel.is_set():
            now = time.perf_counter()
            self.turn_finished.emit(turn_id, TurnStats(started_s=now, finished_s=now, cancelled=True))
            return
        speech = self.speech  # one output for the whole turn, even if the app turns audio off meanwhile
        speaking = speech is not None and self.engine.can_speak and self.engine.settings.speak
        if turn.audio is not None:
            self.recording.user(turn_id, np.asarray(turn.audio))
        first_audio = True
        if speaking and speech is not None:
            speech.start_turn(turn_id)
        for event in self.engine.respond(turn, turn_id, cancel):
            if isinstance(event, TextDelta):
                self.text_delta.emit(turn_id, event.text)
            elif isinstance(event, AudioChunk):
                self.recording.reply(turn_id, event.pcm)
                if speaking and speech is not None and not cancel.is_set():
                    speech.write(event)
                    if first_audio:
                        first_audio = False
                        self.first_audio.emit(turn_id, time.perf_counter())
            elif isinstance(event, TurnFinished):
                if speaking and speech is not None:
                    speech.finish_turn(turn_id)
                self.turn_finished.emit(turn_id, event.stats)
            elif isinstance(event, EngineError):
                if speaking and speech is not None:
                    speech.finish_turn(turn_id)
                self.turn_failed.emit(turn_id, event.message)

    @Slot(object, object, float)
    def listen(self, audio: Any, frames: Any, fps: float) -> None:
        """More of the turn being spoken: the engine prefills what became final (camera frames at
        `fps`, 0 for none)."""
        if self.engine is not None:
            self.engine.listen(audio, frames or (), fps if fps > 0 else None)

    @Slot()
    def abandon(self) -> None:
        """The turn being spoken came to nothing: drop what the engine prefilled of it."""
        if self.engine is not None:
            self.engine.abandon_turn()

    @Slot(int, int)
    def truncate(self, turn_id: int, heard_samples: int) -> None:
        """Keep of reply `turn_id` what was heard (only the last reply can be cut; a reply that never
        reached the history is reported as cut to nothing)."""
        engine = self.engine
        if engine is None:
            return
        if not any(m.role == "assistant" and m.turn_id == turn_id for m in engine.history):
            self.truncated.emit(turn_id, "")  # cancelled before it began: nothing of it was heard
            return
        last = engine.history[-1]
        if last.role != "assistant" or last.turn_id != turn_id:
            return
        try:
            kept = engine.truncate_last_reply(max(0, heard_samples))
        except ValueError:
            return
        self.recording.cut(turn_id, heard_samples)
        self.truncated.emit(turn_id, kept)

    @Slot(str, str)
    def configure(self, speaker: str, system_prompt: str) -> None:
        """New voice and/or persona prompt; a new prompt starts a new conversation."""
        if self.engine is None:
            return
        before = self.engine.settings.system_prompt
        try:
            self.engine.configure(speaker=speaker, system_prompt=system_prompt)
        except Exception as error:
            self.turn_failed.emit(-1, f"cannot switch to voice {speaker!r}: {error}")
            return
        if system_prompt != before:
            self.recording.clear()
            self.conversation_reset.emit()
        self.configured.emit(self.engine.settings.speaker, self.engine.settings.system_prompt)

    @Slot()
    def new_conversation(self) -> None:
        if self.engine is not None:
            self.engine.new_conversation()
        self.recording.clear()
        self.conversation_reset.emit()

    def history(self) -> list[Any]:
        """A copy of the engine's history (read from the GUI thread between turns, for export)."""
        return list(self.engine.history) if self.engine is not None else []


def _weight_bytes(loaded: Any) -> int:
    try:
        return int(loaded.weight_bytes)
    except Exception:
        return 0


class EngineThread(QObject):
    """The GUI side: starts the worker's thread and calls its slots as queued calls."""

    _load = Signal(object)
    _respond = Signal(int, object, object)
    _truncate = Signal(int, int)
    _configure = Signal(str, str)
    _new_conversation = Signal()
    _listen = Signal(object, object, float)
    _abandon = Signal()

    def __init__(self, worker: EngineWorker, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.qthread = QThread()
        self.qthread.setObjectName("engine-worker")
        worker.moveToThread(self.qthread)
        self._load.connect(worker.load)
        self._respond.connect(worker.respond)
        self._truncate.connect(worker.truncate)
        self._configure.connect(worker.configure)
        self._new_conversation.connect(worker.new_conversation)
        self._listen.connect(worker.listen)
        self._abandon.connect(worker.abandon)
        self._cancels: dict[int, threading.Event] = {}
        self.qthread.start()

    def load(self, request: LoadRequest) -> None:
        self._load.emit(request)

    def cancel_load(self) -> None:
        self.worker.load_cancel.set()

    def respond(self, turn_id: int, turn: Any) -> None:
        cancel = threading.Event()
        self._cancels[turn_id] = cancel
        for old in [t for t in self._cancels if t < turn_id - 16]:
            del self._cancels[old]
        self._respond.emit(turn_id, turn, cancel)

    def cancel(self, turn_id: int) -> None:
        event = self._cancels.get(turn_id)
        if event is not None:
            event.set()

    def cancel_all(self) -> None:
        for event in self._cancels.values():
            event.set()

    def truncate(self, turn_id: int, heard_samples: int) -> None:
        self._truncate.emit(turn_id, heard_samples)

    def configure(self, speaker: str, system_prompt: str) -> None:
        self._configure.emit(speaker, system_prompt)

    def new_conversation(self) -> None:
        self._new_conversation.emit()

    def listen(self, audio: Any, frames: Any = None, fps: float = 0.0) -> None:
        """Queue more of the turn being spoken (any thread: the audio thread calls it directly, so
        audio never passes through the GUI thread); it runs in order with turns and truncations."""
        self._listen.emit(audio, frames, fps)

    def abandon(self) -> None:
        self._abandon.emit()

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Cancel everything and end the thread; False when it is still busy after `timeout_s`
        (a load inside one long library call), in which case the caller must not wait on it."""
        self.cancel_load()
        self.cancel_all()
        self.qthread.quit()
        return bool(self.qthread.wait(int(timeout_s * 1000)))
