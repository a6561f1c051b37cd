"""The one vocabulary of events that every layer speaks (DESIGN.md, "Events").

Frozen, slotted dataclasses with no behaviour: the engine, the audio layer and the UI exchange
these and nothing else, so a test can say "send these, expect those".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the assistant's reply text, in order."""

    turn_id: int
    text: str


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Float32 mono speech of the assistant; `first_frame_index` counts 80 ms codec frames from 0."""

    turn_id: int
    pcm: Any  # numpy.ndarray, float32, shape (n,)
    sample_rate: int
    first_frame_index: int


@dataclass(frozen=True, slots=True)
class TurnStats:
    """`time.perf_counter()` stamps per stage of one assistant turn, plus counts."""

    started_s: float = 0.0
    prefill_done_s: float | None = None
    first_text_s: float | None = None
    first_frame_s: float | None = None
    first_audio_s: float | None = None
    finished_s: float | None = None
    prompt_tokens: int = 0
    new_prompt_tokens: int = 0
    live_prefilled_tokens: int = 0  # of the new prompt tokens, those fed while the user was speaking
    talker_prefill_tokens: int = 0  # what the Talker was fed at the reply's start (the rest it heard before)
    text_tokens: int = 0
    codec_frames: int = 0
    audio_samples: int = 0
    cancelled: bool = False
    thinker_forward_s: float = 0.0
    talker_forward_s: float = 0.0
    code2wav_forward_s: float = 0.0
    first_token_s: float | None = None  # the reply's first token chosen (spoken or not)
    tool_calls: int = 0  # calls the reply ended with: the turn goes on once their results are back
    call_end_s: float | None = None  # the last call's closing token chosen
    speculative: bool = False  # computed at the user's pause, before the turn ended (issue 12)


@dataclass(frozen=True, slots=True)
class TurnFinished:
    turn_id: int
    stats: TurnStats = field(default_factory=TurnStats)


@dataclass(frozen=True, slots=True)
class EngineError:
    """A turn ended by a failure; the engine stays usable for the next turn. `code` names a cause
    the app acts on (`PROMPT_TOO_LONG`: the persona's prompt leaves no room for a turn)."""

    turn_id: int
    message: str
    code: str = "engine_error"


PROMPT_TOO_LONG = "system_prompt_too_long"


@dataclass(frozen=True, slots=True)
class UserTranscript:
    """What the user said in turn `turn_id`, as the model heard it (issue 16), in the language spoken."""

    turn_id: int
    text: str


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The user started speaking; `time_s` is on the `time.perf_counter()` clock."""

    time_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SpeechProgress:
    """More of the turn being spoken: 16 kHz mono int16 samples appended since the last one (the
    pre-roll first), so the engine can prefill the turn while it is spoken. The turn's final
    `SpeechEnded.audio` is a prefix of everything sent (trailing silence may be cut)."""

    audio: Any
    audio_start_s: float = 0.0  # perf_counter time of the turn audio's first sample (as in SpeechEnded)


@dataclass(frozen=True, slots=True)
class SpeechPaused:
    """The user paused long enough that the turn's audio would be complete if it ended here: every
    sample of it has gone out as `SpeechProgress`, and more goes out only when speech resumes. If
    the turn ends at this pause, its `SpeechEnded.audio` is exactly what was sent, so a reply
    computed now (the speculative reply) is the reply to the turn."""

    time_s: float


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """A finished user turn: 16 kHz mono int16 audio, pre-roll included."""

    audio: Any  # numpy.ndarray, int16, shape (n,)
    start_s: float = 0.0
    end_s: float = 0.0
    audio_start_s: float = 0.0  # perf_counter time of the audio's first sample (pre-roll included)
    # Ended at a short pause because the end-of-turn model judged the turn complete (the window marks
    # it), not by the silence ceiling; `completion` is the model's probability.
    ended_early: bool = False
    completion: float | None = None


@dataclass(frozen=True, slots=True)
class BargeIn:
    """The user interrupted turn `turn_id` after hearing `heard_samples` of its audio (24 kHz), or
    the speaker went away then (`device_lost`: nobody is speaking)."""

    turn_id: int
    heard_samples: int
    device_lost: bool = False


@dataclass(frozen=True, slots=True)
class Message:
    """One entry of the conversation's visible history (the engine's, or a client's copy of it)."""

    role: str  # "user" or "assistant"
    text: str
    turn_id: int = -1
    interrupted: bool = False
    audio_s: float = 0.0


@dataclass(frozen=True, slots=True)
class DeviceLost:
    """An audio or video device failed; `kind` is "input", "output", "camera" or "screen"."""

    kind: str
    name: str


# -- what an engine client reports to the session (app process) ------------------------------------


@dataclass(frozen=True, slots=True)
class EngineStatus:
    """Progress in words ("loading weights 3/9", "engine restarting…")."""

    message: str


@dataclass(frozen=True, slots=True)
class ModelLoaded:
    info: Any  # app.engine_client.ModelInfo


@dataclass(frozen=True, slots=True)
class LoadFailed:
    message: str


@dataclass(frozen=True, slots=True)
class LoadCancelled:
    pass


@dataclass(frozen=True, slots=True)
class FirstAudio:
    """The first audio of reply `turn_id` went into the playback ring at `written_s` (perf_counter)."""

    turn_id: int
    written_s: float


@dataclass(frozen=True, slots=True)
class ReplyTruncated:
    """Reply `turn_id` was cut; the history keeps `heard_text`, what the user heard of it."""

    turn_id: int
    heard_text: str


@dataclass(frozen=True, slots=True)
class EngineConfigured:
    """The voice and system prompt the engine now has."""

    voice: str
    system_prompt: str


@dataclass(frozen=True, slots=True)
class EngineConnection:
    """The engine process died or the link dropped (`lost`), or it is back with the conversation."""

    lost: bool
    message: str


# -- what the session reports to the window and the journal (app process) --------------------------


@dataclass(frozen=True, slots=True)
class StateChanged:
    state: str  # app.session.State's value: "listening", "user speaking", "thinking", ...


@dataclass(frozen=True, slots=True)
class UserTurnSent:
    """Turn `turn_id` went to the engine: typed `text`, or `audio_s` seconds of speech (text "")."""

    turn_id: int
    text: str
    audio_s: float
    ended_early: bool = False  # a spoken turn the end-of-turn model judged complete at a pause


@dataclass(frozen=True, slots=True)
class Problem:
    """Something the user should know about, in words that name the file, device or setting."""

    message: str


@dataclass(frozen=True, slots=True)
class ConversationReset:
    """A new conversation started (a persona switch or "New conversation")."""

    persona: Any  # app.personas.Persona or None


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class DeviceUnavailable:
    """A device could not open at the start; it is waited for (`reason` says why it failed)."""

    kind: str
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class DeviceRestored:
    """A device that was lost or unavailable works again (`name` is the one now in use)."""

    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class ScreenSharingChanged:
    """Screen sharing went on or off (`target` in words, e.g. "the whole screen"); `reason` says why
    when it stopped or could not start without the user asking (a closed window, Wayland)."""

    on: bool
    target: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ToolCallRequested:
    """The model called a tool (its `<tool_call>` parsed as it streamed, never spoken). `name` is
    empty when the call was not the JSON the format asks for; `arguments` then holds its raw text."""

    turn_id: int
    call_id: str
    name: str
    arguments: str  # a JSON object, as text
    called_s: float = 0.0  # perf_counter when the call's last token was chosen


@dataclass(frozen=True, slots=True)
class ToolConfirmationNeeded:
    """A tool that acts waits for the user's yes or no (in the window, or by voice)."""

    turn_id: int
    call_id: str
    name: str
    arguments: str
    question: str


@dataclass(frozen=True, slots=True)
class AsideAnswer:
    """The engine's text answer to a turn heard aside, out of the conversation (the Realtime
    protocol's out-of-band response): the words of a spoken yes or no to a tool. `key` is the
    asker's; `failed` says why there is no answer."""

    key: int
    text: str
    failed: str = ""


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    """A tool began to run (after the user allowed it, for a tool that acts)."""

    turn_id: int
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolCallFinished:
    """A call's outcome: `result` is what the model is told; `ok` False with `message` saying, in
    words, what went wrong (malformed call, unknown tool, failure, timeout, refusal)."""

    turn_id: int
    call_id: str
    name: str
    arguments: str
    result: str
    ok: bool
    message: str = ""
    duration_s: float = 0.0


Event = (
    TextDelta
    | ToolCallRequested
    | AudioChunk
    | TurnFinished
    | EngineError
    | UserTranscript
    | SpeechStarted
    | SpeechProgress
    | SpeechEnded
    | BargeIn
    | DeviceLost
)
