"""The conversation session: a state machine on the Qt thread wiring audio input, engine and UI.

Audio events arrive from the audio thread through `AudioEvents` (a queued signal); engine events
arrive from the engine worker's thread the same way. The session never waits on either: it sends
intents (start a turn, cancel, truncate) and reacts to what comes back. Barge-in has three steps:
stop generation (the turn's cancel flag), flush playback (the barge-in monitor already did, or
`stop_speaking` does), and truncate the history to what was heard.
"""

from __future__ import annotations

import enum
import time
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot

from app.engine_client import EngineClient, LoadRequest, ModelInfo
from app.personas import Persona
from app.reply_audio import KEEP_ALL_SAMPLES, ReplyAudio
from app.reply_ledger import ReplyLedger
from app.session_parts import AudioEvents, AudioInput, FrameSource, Playback, device_reports
from app.turn_video import LiveFeed, spoken_turn
from events import (
    PROMPT_TOO_LONG,
    AsideAnswer,
    BargeIn,
    ConversationReset,
    EngineConnection,
    EngineError,
    EngineStatus,
    FirstAudio,
    LoadCancelled,
    LoadFailed,
    ModelLoaded,
    Problem,
    ReplyTruncated,
    SpeechEnded,
    SpeechStarted,
    StateChanged,
    TextDelta,
    ToolCallRequested,
    TurnFinished,
    TurnStats,
    UserTurnSent,
)
from facts import SPEECH_IN_RATE_HZ as MIC_RATE_HZ


class State(enum.Enum):
    IDLE = "idle"
    LISTENING = "listening"
    USER_SPEAKING = "user speaking"
    THINKING = "thinking"
    SPEAKING = "assistant speaking"
    INTERRUPTED = "interrupted"


class Session(QObject):
    """Reports everything the window and the journal show as `events.py` dataclasses on `event`:
    `StateChanged`, `SpeechStarted`, `UserTurnSent`, `TextDelta`, `UserTranscript`, `TurnFinished`,
    `ReplyTruncated`, `TurnLatency`, `Problem`, `EngineStatus`, `ModelLoaded`, `LoadFailed`,
    `LoadCancelled`, `ConversationReset`, `EngineConfigured`, `EngineConnection` and
    `ScreenSharingChanged` (the screen share's, passed on from any thread like device events)."""

    reported = Signal(object)

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
        tools: Any = None,  # app.tool_flow.ToolFlow: runs the reply's tool calls, then the reply goes on
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.engine = engine
        self.audio_input = audio_input
        self.playback = playback
        self.camera = camera
        self.tools = tools
        if tools is not None:
            tools.report = self._report  # what running the calls shows travels the session's spine
            tools.voice = audio_input is not None  # a question can be answered aloud
        self._live = LiveFeed()  # the turn being spoken, to the engine (audio thread only)
        self.persona = persona
        self.voice = voice
        self.mode = mode
        self.state = State.IDLE
        self.muted = False
        self.model_info: ModelInfo | None = None
        self.loading = False
        self.replies = ReplyLedger()
        self._state_before_speech = State.LISTENING
        self._speaker = ReplyAudio(playback, self._played_out, self)
        self._audio_events = AudioEvents(self)
        self._audio_events.arrived.connect(self.on_audio_event)
        engine.signals.reported.connect(self.on_engine_event)

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
        listening = self.model_info is not None and not self.muted
        if not self._live.took(event, self.engine, self.camera, listening):
            self._audio_events.post(event)

    def start_audio(self) -> None:
        if self.audio_input is not None:
            self.audio_input.set_mode(self.mode)
            self.audio_input.start(self.post_audio_event)

    def close(self, timeout_s: float = 5.0) -> bool:
        """Stop audio and the engine thread; False if the worker is still inside a long call."""
        self._speaker.unwatch()
        if self.audio_input is not None:
            self.audio_input.stop()
        if self.replies.active is not None:
            self._speaker.flush(self.replies.active)
        self._speaker.close()
        return self.engine.stop(timeout_s)

    # -- user intents --------------------------------------------------------------------------------

    def send_text(self, text: str, images: tuple[Any, ...] = ()) -> int | None:
        """A typed message (with `images`, e.g. a camera snapshot): interrupts a reply in progress,
        then starts a new turn."""
        text = text.strip()
        if not text:
            return None
        if self.model_info is None:
            self._report(
                Problem("the model is not loaded yet: wait for it, or choose one in the first-run dialog")
            )
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
        self._report(ConversationReset(persona))

    def set_voice(self, voice: str) -> None:
        self.voice = voice
        prompt = self.persona.system_prompt if self.persona else ""
        if prompt:
            self.engine.configure(self.voice_in_use, prompt)

    def new_conversation(self) -> None:
        self._interrupt(None)
        self.engine.new_conversation()
        self._report(ConversationReset(self.persona))

    # -- a past conversation continued (issue 16, app/past_conversations.py) --------------------------

    @property
    def last_turn_id(self) -> int:
        return self.replies.last_id

    def restore(self, exchanges: list[Any], *, last_turn_id: int) -> None:
        """A new conversation holding `exchanges` (numbered after this session's turns, up to
        `last_turn_id`), put into the engine without generating."""
        self.new_conversation()
        self.replies.last_id = max(self.replies.last_id, last_turn_id)
        self.engine.restore(exchanges)

    # -- audio events (Qt thread) --------------------------------------------------------------------

    @Slot(object)
    def on_audio_event(self, event: object) -> None:
        if isinstance(event, SpeechStarted):
            if self.state != State.USER_SPEAKING:
                self._state_before_speech = self.state
            self._set_state(State.USER_SPEAKING)
            self._report(SpeechStarted(event.time_s or time.perf_counter()))
        elif isinstance(event, SpeechEnded):
            self._on_speech_ended(event)
        elif isinstance(event, BargeIn):
            if self.replies.in_flight(event.turn_id):
                self._interrupt(event.heard_samples, event.turn_id)
                self._set_state(self._resting_state() if event.device_lost else State.USER_SPEAKING)
        else:
            for report in device_reports(event):
                self._report(report)

    def _on_speech_ended(self, event: SpeechEnded) -> None:
        audio = np.asarray(event.audio)
        answer = audio.size > 0 and self.tools is not None and self.tools.hear_answer(audio)  # not a turn
        if answer or audio.size == 0 or self.model_info is None or self.muted:
            self.engine.abandon()
            restore = self._state_before_speech
            if restore == State.USER_SPEAKING or restore == State.INTERRUPTED:
                restore = self._resting_state()
            self._set_state(restore if self.replies.active is not None else self._resting_state())
            return
        self._interrupt(None)
        end_s = event.end_s or time.perf_counter()
        self._start_turn(
            spoken_turn(audio, event.audio_start_s, self.camera),
            "",
            audio.size / MIC_RATE_HZ,
            end_s,
            ended_early=event.ended_early,
        )

    # -- turns ---------------------------------------------------------------------------------------

    def _start_turn(
        self, turn: Any, text: str, duration_s: float, end_of_speech_s: float, *, ended_early: bool = False
    ) -> int:
        turn_id = self.replies.begin(end_of_speech_s)
        self._report(UserTurnSent(turn_id, text, duration_s, ended_early))
        self._set_state(State.THINKING)
        self.engine.respond(turn_id, turn)
        return turn_id

    def _interrupt(self, heard_samples: int | None, turn_id: int | None = None) -> None:
        """Stop reply `turn_id` (default: the active one), flush its audio, keep what was heard."""
        turn_id = self.replies.active if turn_id is None else turn_id
        if turn_id is None or turn_id in self.replies.cut:
            return
        if turn_id not in self.replies.generating and not self._speaker.playing(turn_id):
            return
        self.engine.cancel(turn_id)
        if heard_samples is None:
            heard_samples = KEEP_ALL_SAMPLES
            if self.speaks:
                heard_samples = self._speaker.heard(turn_id)
                self._speaker.flush(turn_id)
        self.engine.truncate(turn_id, heard_samples)
        if self.tools is not None:
            self.tools.cancel(turn_id)  # after the cut: its calls are answered after the reply kept
        self.replies.mark_cut(turn_id)
        self._speaker.unwatch()
        self._set_state(State.INTERRUPTED)

    def _resting_state(self) -> State:
        if self.model_info is None or self.audio_input is None or self.muted:
            return State.IDLE
        return State.LISTENING

    def _set_state(self, state: State) -> None:
        if state != self.state:
            self.state = state
            self._report(StateChanged(state.value))

    # -- engine events (Qt thread) -------------------------------------------------------------------

    def _report(self, event: object) -> None:
        self.reported.emit(event)

    @Slot(object)
    def on_engine_event(self, event: object) -> None:
        """What the engine client reports; the window and the journal hear it from `event`."""
        match event:
            case ModelLoaded(info):
                self.loading = False
                self.model_info = info
                self._set_state(self._resting_state())
            case LoadFailed() | LoadCancelled():
                self.loading = False
            case TextDelta(turn_id):
                if not self._on_text_delta(turn_id):
                    return
            case FirstAudio(turn_id, written_s):
                self._on_first_audio(turn_id, written_s)
                return
            case ToolCallRequested() if self.tools is not None and event.turn_id not in self.replies.cut:
                self._report(event)  # shown before what running it reports
                self.tools.on_call(event)
                return
            case AsideAnswer() if self.tools is not None:
                self.tools.on_aside(event)  # the words of a yes or no said aloud
                return
            case TurnFinished(turn_id, stats) if self._calls_pending(turn_id, stats):
                self.tools.reply_ended(turn_id)  # the turn goes on with the calls' results
                return
            case TurnFinished(turn_id, stats):
                if not self._on_turn_finished(turn_id, stats):
                    return
            case EngineError(turn_id, message, code):
                self._on_turn_failed(turn_id)
                if code == PROMPT_TOO_LONG and self.persona is not None:
                    name = self.persona.name
                    message = f"Persona {name!r}: {message}. Shorten its prompt (Edit › Personas…)."
                event = Problem(message)
            case ReplyTruncated():
                if self.state == State.INTERRUPTED:
                    self._set_state(self._resting_state())
            case EngineConnection(lost):
                if lost:
                    self._report(EngineStatus("engine restarting…"))
                else:
                    self._set_state(self._resting_state())
        self._report(event)

    def _calls_pending(self, turn_id: int, stats: TurnStats) -> bool:
        return bool(stats.tool_calls) and self.tools is not None and turn_id not in self.replies.cut

    def _on_text_delta(self, turn_id: int) -> bool:
        if turn_id in self.replies.cut:
            return False
        first = self.replies.latency.first_text(turn_id, time.perf_counter())
        if first and not self.speaks and turn_id == self.replies.active:
            self._set_state(State.SPEAKING)
        return True

    def _on_first_audio(self, turn_id: int, written_s: float) -> None:
        if turn_id in self.replies.cut:
            return
        self.replies.latency.stamp(turn_id, first_audio_s=written_s)
        if turn_id == self.replies.active:
            self._set_state(State.SPEAKING)

    def _on_turn_finished(self, turn_id: int, stats: TurnStats) -> bool:
        """Whether the finish is reported (an interrupted reply was reported as truncated)."""
        active = self.replies.ended(turn_id)
        finished_s = stats.finished_s or time.perf_counter()
        latency = self.replies.latency.stamp(turn_id, finished_s=finished_s, text_tokens=stats.text_tokens)
        if latency is not None:
            self._report(latency)
        if turn_id in self.replies.cut:
            return False
        if active:
            if self.speaks and self._speaker.playing(turn_id):
                self._speaker.watch(turn_id)
            else:
                self.replies.active = None
                self._set_state(self._resting_state())
        return True

    def _on_turn_failed(self, turn_id: int) -> None:
        if self.replies.ended(turn_id):
            self.replies.active = None
            self._set_state(self._resting_state())

    def _played_out(self) -> None:
        """The active reply has played out on the speaker."""
        self.replies.active = None
        if self.state == State.SPEAKING:
            self._set_state(self._resting_state())
