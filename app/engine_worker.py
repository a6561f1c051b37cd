"""The engine in this process, in its own thread: the `EngineClient` for tests and benches that
bring their own loader (the app itself runs the engine in a child process, `app/realtime_client.py`).

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
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.engine_client import EngineSignals, LoadRequest, ModelInfo, SpeechOutput
from app.in_process_load import Loader, load_checkpoint, make_engine, model_info
from app.recording import Recording
from events import (
    AsideAnswer,
    AudioChunk,
    EngineConfigured,
    EngineError,
    EngineStatus,
    FirstAudio,
    LoadCancelled,
    LoadFailed,
    Message,
    ModelLoaded,
    ReplyTruncated,
    TurnFinished,
    TurnStats,
    UserTranscript,
)

log = logging.getLogger(__name__)

__all__ = ["EngineThread", "EngineWorker", "LoadRequest", "ModelInfo", "Recording"]


class _LoadStopped(Exception):
    """The load was cancelled (raised from the status callback between loading stages)."""


class EngineWorker(EngineSignals):
    """Owns the model and the `Engine`; every slot runs in the worker thread."""

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
        self.tools: tuple[Any, ...] = ()  # ToolSpecs the model may call, given to every engine made
        self.transcripts: dict[int, str] = {}  # the user's words of spoken turns, for `history()`
        self.model_info: ModelInfo | None = None
        self.load_cancel = threading.Event()

    # -- loading ------------------------------------------------------------------------------------

    @Slot(object)
    def load(self, request: LoadRequest) -> None:
        self.load_cancel.clear()
        started = time.perf_counter()

        def say(message: str) -> None:
            if self.load_cancel.is_set():
                raise _LoadStopped
            self.report(EngineStatus(message))

        try:
            loaded = load_checkpoint(request, say, self._loader, self._demo_dir)
            if self.load_cancel.is_set():
                raise _LoadStopped
            say("starting the conversation engine")
            self.engine = make_engine(loaded, request, self.tools)
        except _LoadStopped:
            self.report(LoadCancelled())
            return
        except Exception as error:
            if self.load_cancel.is_set():
                self.report(LoadCancelled())
                return
            from model.loading import ModelLoadError

            if isinstance(error, ModelLoadError):
                self.report(LoadFailed(str(error)))
            else:
                log.exception("loading failed")
                self.report(LoadFailed(f"loading failed: {type(error).__name__}: {error}"))
            return
        self.model_info = model_info(loaded, request, self.engine, time.perf_counter() - started)
        self.report(ModelLoaded(self.model_info))

    # -- turns --------------------------------------------------------------------------------------

    @Slot(int, object, object)
    def respond(self, turn_id: int, turn: Any, cancel: threading.Event) -> None:
        """Run one turn. `turn` is a `UserTurn`, or a callable that builds one here, off the Qt
        thread (a spoken turn picks its camera clip that way)."""
        if callable(turn):
            turn = turn()
        if self.engine is None:
            self.report(EngineError(turn_id, "the model is not loaded yet"))
            return
        if cancel.is_set():
            now = time.perf_counter()
            self.report(TurnFinished(turn_id, TurnStats(started_s=now, finished_s=now, cancelled=True)))
            return
        speech = self.speech  # one output for the whole turn, even if the app turns audio off meanwhile
        speaking = speech is not None and self.engine.can_speak and self.engine.settings.speak
        if turn.audio is not None:
            self.recording.user(turn_id, np.asarray(turn.audio))
        first_audio = True
        if speaking and speech is not None:
            speech.start_turn(turn_id)
        for event in self.engine.respond(turn, turn_id, cancel):
            if isinstance(event, AudioChunk):
                self.recording.reply(turn_id, event.pcm)
                if speaking and speech is not None and not cancel.is_set():
                    speech.write(event)
                    if first_audio:
                        first_audio = False
                        self.report(FirstAudio(turn_id, time.perf_counter()))
                continue
            if isinstance(event, UserTranscript):
                self.transcripts[turn_id] = event.text
            if isinstance(event, TurnFinished | EngineError) and speaking and speech is not None:
                speech.finish_turn(turn_id)
            self.report(event)

    @Slot(int, str, object)
    def say_notice(self, key: int, request: str, cancel: threading.Event) -> None:
        """Say `request`'s answer out of the conversation (`Engine.say_aside`), under turn id -key."""
        speech = self.speech
        if self.engine is None or speech is None or not self.engine.can_speak or cancel.is_set():
            return
        try:
            for event in self.engine.say_aside(request, -key, cancel):
                if isinstance(event, AudioChunk) and not cancel.is_set():
                    speech.write(event)
        except Exception as error:
            log.warning("the engine could not say that a tool still runs: %s", error)
        finally:
            speech.finish_turn(-key)

    @Slot(int)
    def flush_notice(self, key: int) -> None:
        """Cut notice `key` at the speaker (after it, in order: a flush may wait on the device)."""
        flush = getattr(self.speech, "flush", None)
        if flush is not None:
            flush(-key)

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

    @Slot(int, object)
    def answer_aside(self, key: int, turn: Any) -> None:
        """`turn` heard alone, its text answer reported as `AsideAnswer`; the conversation is untouched."""
        if self.engine is None:
            self.report(AsideAnswer(key, "", "the model is not loaded yet"))
            return
        try:
            self.report(
                AsideAnswer(key, self.engine.answer_aside(turn, in_conversation=False, instructions=""))
            )
        except Exception as error:
            log.warning("an answer aside failed: %s", error)
            self.report(AsideAnswer(key, "", f"{type(error).__name__}: {error}"))

    @Slot(int, int)
    def truncate(self, turn_id: int, heard_samples: int) -> None:
        """Keep of reply `turn_id` what was heard (only the last reply can be cut; a reply that never
        reached the history is reported as cut to nothing)."""
        engine = self.engine
        if engine is None:
            return
        if not any(m.role == "assistant" and m.turn_id == turn_id for m in engine.history):
            self.report(ReplyTruncated(turn_id, ""))  # cancelled before it began: nothing of it was heard
            return
        last = engine.history[-1]
        if last.role != "assistant" or last.turn_id != turn_id:
            return
        try:
            kept = engine.truncate_last_reply(max(0, heard_samples))
        except ValueError:
            return
        self.recording.cut(turn_id, heard_samples)
        self.report(ReplyTruncated(turn_id, kept))

    @Slot(str, str)
    def configure(self, speaker: str, system_prompt: str) -> None:
        """New voice and/or persona prompt; a new prompt starts a new conversation."""
        if self.engine is None:
            return
        before = self.engine.settings.system_prompt
        try:
            self.engine.configure(speaker=speaker, system_prompt=system_prompt)
        except Exception as error:
            self.report(EngineError(-1, f"cannot switch to voice {speaker!r}: {error}"))
            return
        if system_prompt != before:
            self.recording.clear()
            self.transcripts.clear()
        self.report(EngineConfigured(self.engine.settings.speaker, self.engine.settings.system_prompt))

    @Slot(object)
    def set_tools(self, tools: tuple[Any, ...]) -> None:
        """The tools the model may call (declared in its system turn; a conversation keeps its turns)."""
        self.tools = tuple(tools)
        if self.engine is not None:
            self.engine.configure(tools=self.tools)

    @Slot()
    def new_conversation(self) -> None:
        if self.engine is not None:
            self.engine.new_conversation()
        self.recording.clear()
        self.transcripts.clear()

    @Slot(object)
    def restore(self, exchanges: list[Any]) -> None:
        """A past conversation continued (issue 16): each `Exchange` put back without generating, as
        a client restoring a new engine does (`Engine.remember_exchange`)."""
        if self.engine is None:
            self.report(EngineError(-1, "the model is not loaded yet: nothing to continue in"))
            return
        from model.media_input import UserTurn

        for exchange in [part for e in exchanges for part in e.as_read()]:  # calls as the model read them
            turn = UserTurn(text=exchange.text, audio=exchange.audio, images=tuple(exchange.images))
            try:
                self.engine.remember_exchange(turn, exchange.reply or "", exchange.turn_id)
            except Exception as error:
                why = f"turn {exchange.turn_id} of the past conversation could not be restored: {error}"
                self.report(EngineError(-1, why))
                return
            if exchange.audio is not None:
                self.recording.user(exchange.turn_id, np.asarray(exchange.audio))

    def history(self) -> list[Message]:
        """A copy of the engine's history (read from the GUI thread between turns, for export), a
        spoken turn with its words once they were transcribed (the engine keeps "(spoken)")."""
        if self.engine is None:
            return []
        words = {turn_id: text for turn_id, text in self.transcripts.items() if text}
        return [
            replace(m, text=words[m.turn_id]) if m.role == "user" and m.audio_s and m.turn_id in words else m
            for m in self.engine.history
        ]


class EngineThread(QObject):
    """The GUI side: starts the worker's thread and calls its slots as queued calls."""

    _load = Signal(object)
    _respond = Signal(int, object, object)
    _truncate = Signal(int, object)  # heard samples: "all of it" is 1 << 40, beyond a C int
    _configure = Signal(str, str)
    _set_tools = Signal(object)
    _new_conversation = Signal()
    _restore = Signal(object)
    _listen = Signal(object, object, float)
    _abandon = Signal()
    _aside = Signal(int, object)
    _notice = Signal(int, str, object)
    _unnotice = Signal(int)

    def __init__(self, worker: EngineWorker, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.signals: EngineSignals = worker
        self.recording = worker.recording
        self.qthread = QThread()
        self.qthread.setObjectName("engine-worker")
        worker.moveToThread(self.qthread)
        self._load.connect(worker.load)
        self._respond.connect(worker.respond)
        self._truncate.connect(worker.truncate)
        self._configure.connect(worker.configure)
        self._set_tools.connect(worker.set_tools)
        self._new_conversation.connect(worker.new_conversation)
        self._restore.connect(worker.restore)
        self._listen.connect(worker.listen)
        self._abandon.connect(worker.abandon)
        self._aside.connect(worker.answer_aside)
        self._notice.connect(worker.say_notice)
        self._unnotice.connect(worker.flush_notice)
        self._notice_cancels: dict[int, threading.Event] = {}
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

    def set_tools(self, tools: tuple[Any, ...]) -> None:
        self._set_tools.emit(tuple(tools))

    def new_conversation(self) -> None:
        self._new_conversation.emit()

    def restore(self, exchanges: list[Any]) -> None:
        self._restore.emit(list(exchanges))

    def listen(self, audio: Any, frames: Any = None, fps: float = 0.0) -> None:
        """Queue more of the turn being spoken (any thread: the audio thread calls it directly, so
        audio never passes through the GUI thread); it runs in order with turns and truncations."""
        self._listen.emit(audio, frames, fps)

    def abandon(self) -> None:
        self._abandon.emit()

    def answer_aside(self, key: int, turn: Any) -> None:
        self._aside.emit(key, turn)

    def say_notice(self, key: int, request: str) -> None:
        self._notice_cancels[key] = threading.Event()
        self._notice.emit(key, request, self._notice_cancels[key])

    def cancel_notice(self, key: int) -> None:
        """Stop notice `key`, and cut it at the speaker."""
        cancel = self._notice_cancels.pop(key, None)
        if cancel is not None:
            cancel.set()
            self._unnotice.emit(key)

    def speculate(self) -> None:
        """Not in process: the engine in its own process computes the reply at a pause
        (`realtime/speculation.py`); tests and benches here get the plain reply at the turn's end."""

    def history(self) -> list[Message]:
        return self.worker.history()

    def set_speech(self, speech: SpeechOutput | None) -> None:
        self.worker.speech = speech

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Cancel everything and end the thread; False when it is still busy after `timeout_s`
        (a load inside one long library call), in which case the caller must not wait on it."""
        self.cancel_load()
        self.cancel_all()
        self.qthread.quit()
        return bool(self.qthread.wait(int(timeout_s * 1000)))
