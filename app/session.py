"""The conversation session: a state machine on the Qt thread wiring audio input, engine and UI.

Audio events arrive from the audio thread through `AudioEvents` (a queued signal); engine events
arrive from the engine worker's thread the same way. The session never waits on either: it sends
intents (start a turn, cancel, truncate) and reacts to what comes back. Barge-in has three steps:
stop generation (the turn's cancel flag), flush playback (the barge-in monitor already did, or
`stop_speaking` does), and truncate the history to what was heard.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal, Slot

from app.engine_client import EngineClient, LoadRequest, ModelInfo
from app.personas import Persona
from events import BargeIn, DeviceLost, SpeechEnded, SpeechProgress, SpeechStarted, TurnStats

DEVICE_WORDS = {"input": "microphone", "output": "speaker", "camera": "camera"}
CAMERA_LOOKBACK_S = 2.0  # frames before the turn's audio: its lead-in, and the scene that sets its rate
KEEP_ALL_SAMPLES = 1 << 40  # "heard everything": a typed conversation keeps the whole reply
MIC_RATE_HZ = 16_000


class State(enum.Enum):
    IDLE = "idle"
    LISTENING = "listening"
    USER_SPEAKING = "user speaking"
    THINKING = "thinking"
    SPEAKING = "assistant speaking"
    INTERRUPTED = "interrupted"


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


@dataclass(frozen=True)
class TurnLatency:
    """One turn's timings; `end_of_speech_s` is the end of the user's speech (or the send of a typed
    message), every stamp on the `time.perf_counter()` clock."""

    turn_id: int
    end_of_speech_s: float
    first_text_s: float | None = None
    first_audio_s: float | None = None
    text_tokens: int = 0
    finished_s: float | None = None

    @property
    def first_text_ms(self) -> float | None:
        return None if self.first_text_s is None else 1000 * (self.first_text_s - self.end_of_speech_s)

    @property
    def first_audio_ms(self) -> float | None:
        return None if self.first_audio_s is None else 1000 * (self.first_audio_s - self.end_of_speech_s)

    @property
    def tokens_per_s(self) -> float | None:
        if self.first_text_s is None or self.finished_s is None or self.text_tokens < 2:
            return None
        span = self.finished_s - self.first_text_s
        return (self.text_tokens - 1) / span if span > 0 else None


class AudioEvents(QObject):
    """Carries audio-thread events to the Qt thread: `post` may be called from any thread."""

    arrived = Signal(object)

    def post(self, event: object) -> None:
        self.arrived.emit(event)


class Session(QObject):
    state_changed = Signal(str)
    speech_started = Signal(float)  # perf_counter time the user started speaking
    status = Signal(str)
    model_ready = Signal(object)  # ModelInfo
    load_failed = Signal(str)
    load_cancelled = Signal()
    error = Signal(str)
    user_turn = Signal(int, str, float)  # turn id, text ("" when spoken), seconds of speech
    reply_text = Signal(int, str)
    reply_finished = Signal(int, object)  # turn id, TurnStats
    reply_interrupted = Signal(int, str)  # turn id, the text that was heard
    latency = Signal(object)  # TurnLatency
    conversation_reset = Signal(object)  # the Persona now in use
    configured = Signal(str, str)  # voice, system prompt, as the engine has them

    def __init__(
        self,
        engine: EngineClient,
        *,
        audio_input: AudioInput | None = None,
        playback: Playback | None = None,
        camera: FrameSource | None = None,
        persona: Persona | None = None,
        voice: str = "",
        mode: str = "hands-free",
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.engine = engine
        self.audio_input = audio_input
        self.playback = playback
        self.camera = camera
        self._live_clip: Any = None  # the camera side of the turn being spoken (audio thread only)
        self.persona = persona
        self.voice = voice
        self.mode = mode
        self.state = State.IDLE
        self.muted = False
        self.model_info: ModelInfo | None = None
        self.loading = False
        self._turn_id = 0
        self._active: int | None = None  # the turn whose reply is being generated or played
        self._generating: set[int] = set()
        self._interrupted: set[int] = set()
        self._latency: dict[int, TurnLatency] = {}
        self._state_before_speech = State.LISTENING
        self._flushes: list[threading.Thread] = []
        self._audio_events = AudioEvents(self)
        self._audio_events.arrived.connect(self.on_audio_event)
        self._drain_timer = QTimer(self)
        self._drain_timer.setInterval(40)
        self._drain_timer.timeout.connect(self._check_playback)
        worker = engine.signals
        worker.status.connect(self._on_status)
        worker.loaded.connect(self._on_loaded)
        worker.load_failed.connect(self._on_load_failed)
        worker.load_cancelled.connect(self._on_load_cancelled)
        worker.text_delta.connect(self._on_text_delta)
        worker.first_audio.connect(self._on_first_audio)
        worker.turn_finished.connect(self._on_turn_finished)
        worker.turn_failed.connect(self._on_turn_failed)
        worker.truncated.connect(self._on_truncated)
        worker.configured.connect(self._on_configured)
        worker.connection.connect(self._on_connection)

    # -- lifecycle -----------------------------------------------------------------------------------

    @property
    def speaks(self) -> bool:
        return self.playback is not None and self.model_info is not None and self.model_info.can_speak

    @property
    def voice_in_use(self) -> str:
        return self.voice or (self.persona.voice if self.persona else "ethan")

    def load(self, request: LoadRequest) -> None:
        """Start loading the model (in the worker); the window keeps working meanwhile."""
        self.loading = True
        self.model_info = None
        self.engine.load(request)

    def cancel_load(self) -> None:
        self.engine.cancel_load()

    def post_audio_event(self, event: object) -> None:
        """Deliver an audio-layer event from any thread. The turn's audio while it is spoken goes
        straight to the engine worker (prefilled as it arrives); the rest is handled on the Qt thread."""
        if isinstance(event, SpeechProgress):
            if self.model_info is not None and not self.muted:
                self._listen(event)
            return
        self._audio_events.post(event)

    def _listen(self, event: SpeechProgress) -> None:
        """Audio thread: feed the engine the turn being spoken, with the camera's frames at the
        clip's ticks when the camera runs (the same frames `SpokenTurn` picks at the end)."""
        camera = self.camera
        if camera is None or event.audio_start_s <= 0:
            self.engine.listen(event.audio)
            return
        from app.turn_video import LiveClip

        if self._live_clip is None or self._live_clip.audio_start_s != event.audio_start_s:
            self._live_clip = LiveClip(camera, event.audio_start_s)
        audio, frames = self._live_clip.add(np.asarray(event.audio))
        self.engine.listen(audio, frames, self._live_clip.fps)

    def start_audio(self) -> None:
        if self.audio_input is not None:
            self.audio_input.set_mode(self.mode)
            self.audio_input.start(self.post_audio_event)

    def close(self, timeout_s: float = 5.0) -> bool:
        """Stop audio and the engine thread; False if the worker is still inside a long call."""
        self._drain_timer.stop()
        if self.audio_input is not None:
            self.audio_input.stop()
        if self.playback is not None and self._active is not None:
            self._flush_in_background(self._active)
        for thread in self._flushes:
            thread.join(timeout=1.0)
        return self.engine.stop(timeout_s)

    # -- user intents --------------------------------------------------------------------------------

    def send_text(self, text: str, images: tuple[Any, ...] = ()) -> int | None:
        """A typed message (with `images`, e.g. a camera snapshot): interrupts a reply in progress,
        then starts a new turn."""
        text = text.strip()
        if not text:
            return None
        if self.model_info is None:
            self.error.emit("the model is not loaded yet: wait for it, or choose one in the first-run dialog")
            return None
        from model.media_input import UserTurn

        self._interrupt(None)
        return self._start_turn(UserTurn(text=text, images=images), text, 0.0, time.perf_counter())

    def stop_speaking(self) -> None:
        """Stop the reply now: generation, playback, and the history cut to what was heard."""
        self._interrupt(None)

    def set_muted(self, muted: bool) -> None:
        self.muted = muted
        if self.audio_input is not None:
            self.audio_input.set_muted(muted)
        if self.state in (State.LISTENING, State.IDLE, State.USER_SPEAKING):
            self._set_state(self._resting_state())

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        if self.audio_input is not None:
            self.audio_input.set_mode(mode)

    def press_talk(self) -> None:
        """Push-to-talk key or button down: a reply in progress stops, recording starts (only in
        push-to-talk mode; hands-free listens all the time)."""
        if self.audio_input is None or self.muted or self.mode != "push-to-talk":
            return
        self._interrupt(None)
        self.audio_input.press()

    def release_talk(self) -> None:
        if self.audio_input is not None:
            self.audio_input.release()

    def set_persona(self, persona: Persona) -> None:
        """Switching persona starts a new conversation with its prompt (and its voice, unless a
        voice was picked)."""
        self._interrupt(None)
        self.persona = persona
        self.engine.configure(self.voice_in_use, persona.system_prompt)
        self.conversation_reset.emit(persona)

    def set_voice(self, voice: str) -> None:
        self.voice = voice
        prompt = self.persona.system_prompt if self.persona else ""
        if prompt:
            self.engine.configure(self.voice_in_use, prompt)

    def new_conversation(self) -> None:
        self._interrupt(None)
        self.engine.new_conversation()
        self.conversation_reset.emit(self.persona)

    # -- audio events (Qt thread) --------------------------------------------------------------------

    @Slot(object)
    def on_audio_event(self, event: object) -> None:
        if isinstance(event, SpeechStarted):
            if self.state != State.USER_SPEAKING:
                self._state_before_speech = self.state
            self._set_state(State.USER_SPEAKING)
            self.speech_started.emit(event.time_s or time.perf_counter())
        elif isinstance(event, SpeechEnded):
            self._on_speech_ended(event)
        elif isinstance(event, BargeIn):
            if event.turn_id == self._active or event.turn_id in self._generating:
                self._interrupt(event.heard_samples, event.turn_id)
                self._set_state(State.USER_SPEAKING)
        elif isinstance(event, DeviceLost):
            what = DEVICE_WORDS.get(event.kind, event.kind)
            self.error.emit(f"The {what} {event.name!r} stopped working; reconnecting when it is back.")

    def _on_speech_ended(self, event: SpeechEnded) -> None:
        audio = np.asarray(event.audio)
        if audio.size == 0 or self.model_info is None or self.muted:
            self.engine.abandon()
            restore = self._state_before_speech
            if restore == State.USER_SPEAKING or restore == State.INTERRUPTED:
                restore = self._resting_state()
            self._set_state(restore if self._active is not None else self._resting_state())
            return
        self._interrupt(None)
        end_s = event.end_s or time.perf_counter()
        self._start_turn(self._spoken_turn(audio, event.audio_start_s), "", audio.size / MIC_RATE_HZ, end_s)

    def _spoken_turn(self, audio: np.ndarray, audio_start_s: float) -> Any:
        """The turn for the engine: with the camera running, a `SpokenTurn` that picks its clip on
        the worker (only the list of stored frames is taken here, under the camera's lock)."""
        from model.media_input import UserTurn

        if self.camera is None or audio_start_s <= 0:
            return UserTurn(audio=audio, audio_rate_hz=MIC_RATE_HZ)
        from app.turn_video import SpokenTurn

        end_s = audio_start_s + audio.size / MIC_RATE_HZ
        frames = self.camera.frames_between(audio_start_s - CAMERA_LOOKBACK_S, end_s)
        if not frames:
            return UserTurn(audio=audio, audio_rate_hz=MIC_RATE_HZ)
        return SpokenTurn(audio, audio_start_s, frames)

    # -- turns ---------------------------------------------------------------------------------------

    def _start_turn(self, turn: Any, text: str, duration_s: float, end_of_speech_s: float) -> int:
        self._turn_id += 1
        turn_id = self._turn_id
        self._active = turn_id
        self._generating.add(turn_id)
        self._latency[turn_id] = TurnLatency(turn_id, end_of_speech_s)
        for old in [t for t in self._latency if t < turn_id - 32]:
            del self._latency[old]
        self._interrupted = {t for t in self._interrupted if t >= turn_id - 32}
        self.user_turn.emit(turn_id, text, duration_s)
        self._set_state(State.THINKING)
        self.engine.respond(turn_id, turn)
        return turn_id

    def _interrupt(self, heard_samples: int | None, turn_id: int | None = None) -> None:
        """Stop reply `turn_id` (default: the active one), flush its audio, keep what was heard."""
        turn_id = self._active if turn_id is None else turn_id
        if turn_id is None or turn_id in self._interrupted:
            return
        still_playing = self.playback is not None and self.playback.speaking_turn() == turn_id
        if turn_id not in self._generating and not still_playing:
            return
        self.engine.cancel(turn_id)
        if heard_samples is None:
            heard_samples = KEEP_ALL_SAMPLES
            if self.speaks and self.playback is not None:
                heard_samples = self.playback.played_samples(turn_id)
                self._flush_in_background(turn_id)
        self.engine.truncate(turn_id, heard_samples)
        self._interrupted.add(turn_id)
        if turn_id == self._active:
            self._active = None
        self._drain_timer.stop()
        self._set_state(State.INTERRUPTED)

    def _flush_in_background(self, turn_id: int) -> None:
        """Fade out and drop the rest of the turn's audio without waiting on the audio callback here."""
        playback = self.playback
        if playback is None:
            return
        thread = threading.Thread(target=playback.flush, args=(turn_id,), name="playback-flush", daemon=True)
        thread.start()
        self._flushes = [t for t in self._flushes if t.is_alive()] + [thread]

    def _resting_state(self) -> State:
        if self.model_info is None or self.audio_input is None or self.muted:
            return State.IDLE
        return State.LISTENING

    def _set_state(self, state: State) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state.value)

    def _stamp(self, turn_id: int, **changes: Any) -> None:
        current = self._latency.get(turn_id)
        if current is not None:
            self._latency[turn_id] = replace(current, **changes)

    # -- engine events (Qt thread) -------------------------------------------------------------------

    @Slot(str)
    def _on_status(self, message: str) -> None:
        self.status.emit(message)

    @Slot(object)
    def _on_loaded(self, info: ModelInfo) -> None:
        self.loading = False
        self.model_info = info
        self._set_state(self._resting_state())
        self.model_ready.emit(info)

    @Slot(str)
    def _on_load_failed(self, message: str) -> None:
        self.loading = False
        self.load_failed.emit(message)

    @Slot()
    def _on_load_cancelled(self) -> None:
        self.loading = False
        self.status.emit("loading cancelled")
        self.load_cancelled.emit()

    @Slot(int, str)
    def _on_text_delta(self, turn_id: int, text: str) -> None:
        if turn_id in self._interrupted:
            return
        latency = self._latency.get(turn_id)
        if latency is not None and latency.first_text_s is None:
            self._stamp(turn_id, first_text_s=time.perf_counter())
            if not self.speaks and turn_id == self._active:
                self._set_state(State.SPEAKING)
        self.reply_text.emit(turn_id, text)

    @Slot(int, float)
    def _on_first_audio(self, turn_id: int, written_s: float) -> None:
        if turn_id in self._interrupted:
            return
        self._stamp(turn_id, first_audio_s=written_s)
        if turn_id == self._active:
            self._set_state(State.SPEAKING)

    @Slot(int, object)
    def _on_turn_finished(self, turn_id: int, stats: TurnStats) -> None:
        self._generating.discard(turn_id)
        self._stamp(
            turn_id, finished_s=stats.finished_s or time.perf_counter(), text_tokens=stats.text_tokens
        )
        latency = self._latency.get(turn_id)
        if latency is not None:
            self.latency.emit(latency)
        if turn_id in self._interrupted:
            return
        self.reply_finished.emit(turn_id, stats)
        if turn_id != self._active:
            return
        if self.speaks and self.playback is not None and self.playback.speaking_turn() == turn_id:
            self._drain_timer.start()
        else:
            self._active = None
            self._set_state(self._resting_state())

    @Slot(int, str)
    def _on_turn_failed(self, turn_id: int, message: str) -> None:
        self._generating.discard(turn_id)
        self.error.emit(message)
        if turn_id == self._active:
            self._active = None
            self._set_state(self._resting_state())

    @Slot(int, str)
    def _on_truncated(self, turn_id: int, kept_text: str) -> None:
        self.reply_interrupted.emit(turn_id, kept_text)
        if self.state == State.INTERRUPTED:
            self._set_state(self._resting_state())

    @Slot(str, str)
    def _on_configured(self, voice: str, prompt: str) -> None:
        self.configured.emit(voice, prompt)

    @Slot(str, str)
    def _on_connection(self, kind: str, message: str) -> None:
        """The engine process died or the link dropped ("lost"), or it is back ("restored")."""
        if kind == "lost":
            self.error.emit(message)
            self.status.emit("engine restarting…")
        else:
            self.status.emit(message)
            self._set_state(self._resting_state())

    @Slot()
    def _check_playback(self) -> None:
        if self._active is None or self.playback is None or self.playback.speaking_turn() != self._active:
            self._drain_timer.stop()
            self._active = None
            if self.state == State.SPEAKING:
                self._set_state(self._resting_state())
