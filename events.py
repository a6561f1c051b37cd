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


@dataclass(frozen=True, slots=True)
class TurnFinished:
    turn_id: int
    stats: TurnStats = field(default_factory=TurnStats)


@dataclass(frozen=True, slots=True)
class EngineError:
    """A turn ended by a failure; the engine stays usable for the next turn."""

    turn_id: int
    message: str


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
class SpeechEnded:
    """A finished user turn: 16 kHz mono int16 audio, pre-roll included."""

    audio: Any  # numpy.ndarray, int16, shape (n,)
    start_s: float = 0.0
    end_s: float = 0.0
    audio_start_s: float = 0.0  # perf_counter time of the audio's first sample (pre-roll included)


@dataclass(frozen=True, slots=True)
class BargeIn:
    """The user interrupted turn `turn_id` after hearing `heard_samples` of its audio (24 kHz)."""

    turn_id: int
    heard_samples: int


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
    """An audio or video device failed; `kind` is "input", "output" or "camera"."""

    kind: str
    name: str


Event = (
    TextDelta
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
