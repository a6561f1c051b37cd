"""Turn-taking on 10 ms microphone frames: hands-free (voice activity) or push-to-talk.

Hands-free: a turn starts when `start_voiced_ms` of speech fall within `start_window_ms`
(`SpeechStarted`, timed at its first voiced frame). At each pause of `end_of_turn.pause_ms` a judge
(the end-of-turn model, off this thread: `turn_judge`) is asked whether the turn is complete; yes ends
it once the pause reaches `end_of_turn.earliest_ms` (`SpeechEnded.ended_early`), no keeps listening
until `end_of_turn.ceiling_ms` of silence. With `speculate`, a pause that reaches
`end_of_turn.pause_ms` and does not end the turn yet is announced (`SpeechPaused`, everything so far
sent) and later audio held back until speech resumes: if the turn ends at that pause and nothing
held back stands out of the room's background (an unvoiced ending, "...thanks", still would), the
turn is exactly the audio sent, so the engine may compute its reply meanwhile.
Without a judge, `end_of_turn.silence_only_ms` of silence ends it; `max_turn_ms` always does
(`SpeechEnded` with the audio from `pre_roll_ms` before the start to `trailing_ms` after the last
speech). A turn with less than `min_turn_ms` of speech, or whose speech does not stand out of the
room's background (`VoiceActivity.stands_out`: background talk that just started), is no turn: it
ends with `SpeechEnded` whose audio is empty. Push-to-talk: `press()` and `release()` (any thread, stamped
on perf_counter) and the turn is exactly the frames captured in between.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from audio_io.end_of_turn import DEFAULT_RESPONSIVENESS, EndOfTurnPolicy, policy_for
from audio_io.formats import MIC_FRAME_MS
from audio_io.microphone import MicFrame
from audio_io.turn_judge import TurnJudge
from audio_io.vad import VadConfig, VoiceActivity, level_db
from events import SpeechEnded, SpeechPaused, SpeechProgress, SpeechStarted

TurnMode = Literal["hands_free", "push_to_talk"]


@dataclass(frozen=True, slots=True)
class TurnConfig:
    mode: TurnMode = "hands_free"
    vad: VadConfig = field(default_factory=VadConfig)
    start_window_ms: int = 300
    start_voiced_ms: int = 120
    end_of_turn: EndOfTurnPolicy = field(default_factory=lambda: policy_for(DEFAULT_RESPONSIVENESS))
    pre_roll_ms: int = 500  # a first word under noise may be heard as speech only ~0.4 s in
    # a frame this far above the room's background is a sound, not the room: the VAD hears a soft
    # onset ("th", "h") late, so the start goes back over such frames, up to `onset_lookback_ms`
    sound_margin_db: float = 6.0
    # held-back frames after a speculated pause this far above the background stay in the turn
    # (lower than the onset's: a lost ending is worse than a speculative reply not used)
    ending_margin_db: float = 3.0
    onset_lookback_ms: int = 200
    trailing_ms: int = 400  # unvoiced endings ("...thanks.") run on after the last frame heard as speech
    min_turn_ms: int = 250
    max_turn_ms: int = 30_000
    progress_ms: int = 500  # SpeechProgress every this much audio of a turn (0: none)
    speculate: bool = True  # SpeechPaused at pauses that may end the turn (needs progress_ms > 0)

    def __post_init__(self) -> None:
        if self.mode not in ("hands_free", "push_to_talk"):
            raise ValueError(f"mode must be hands_free or push_to_talk, not {self.mode!r}")
        if not 0 < self.start_voiced_ms <= self.start_window_ms:
            raise ValueError("need 0 < start_voiced_ms <= start_window_ms")
        if self.min_turn_ms > self.max_turn_ms:
            raise ValueError("min_turn_ms must not exceed max_turn_ms")


class TurnDetector:
    """Feed every frame, in order, to `process`; it returns the events that frame caused."""

    def __init__(self, config: TurnConfig | None = None, judge: TurnJudge | None = None) -> None:
        self.config = config or TurnConfig()
        self.judge = judge
        self._vad = VoiceActivity(self.config.vad)
        c = self.config
        self._window: collections.deque[bool] = collections.deque(maxlen=c.start_window_ms // MIC_FRAME_MS)
        keep = (c.pre_roll_ms + c.start_window_ms) // MIC_FRAME_MS
        self._recent: collections.deque[MicFrame] = collections.deque(maxlen=keep)
        self._turn: list[MicFrame] | None = None
        self._start: MicFrame | None = None
        self._last_speech: MicFrame | None = None
        self._sent = 0  # frames of the current turn sent as SpeechProgress
        self._previous_speech = False
        self._levels_db: list[tuple[bool, float]] = []  # the current turn's frames: (speech, level)
        self._asked: int | None = None  # the pause (frame index) the judge was asked about
        self._paused = False  # SpeechPaused went out for this pause: later audio is held back
        self._complete: float | None = None  # the judge's "complete" for this pause
        self._ptt_lock = threading.Lock()
        self._press_s: float | None = None
        self._release_s: float | None = None

    def press(self, at_s: float | None = None) -> None:
        """Push-to-talk key down (time on perf_counter; now by default)."""
        with self._ptt_lock:
            self._press_s, self._release_s = (time.perf_counter() if at_s is None else at_s), None

    def release(self, at_s: float | None = None) -> None:
        with self._ptt_lock:
            if self._press_s is not None:
                self._release_s = time.perf_counter() if at_s is None else at_s

    def process(self, frame: MicFrame) -> list[object]:
        events = self._push_to_talk(frame) if self.config.mode == "push_to_talk" else self._hands_free(frame)
        progress = self._progress()
        if progress is not None:
            events.insert(1 if events and isinstance(events[0], SpeechStarted) else 0, progress)
        return events

    def _progress(self) -> SpeechProgress | None:
        """The frames of the current turn not sent yet, once there are `progress_ms` of them."""
        every = self.config.progress_ms // MIC_FRAME_MS
        if self._turn is None or every <= 0 or len(self._turn) - self._sent < every or self._paused:
            return None
        return self._send_rest()

    def _send_rest(self) -> SpeechProgress | None:
        assert self._turn is not None
        if len(self._turn) == self._sent:
            return None
        frames, self._sent = self._turn[self._sent :], len(self._turn)
        return SpeechProgress(
            audio=np.concatenate([f.pcm for f in frames]), audio_start_s=self._turn[0].time_s
        )

    # -- push-to-talk -----------------------------------------------------------------------------

    def _push_to_talk(self, frame: MicFrame) -> list[object]:
        with self._ptt_lock:
            press_s, release_s = self._press_s, self._release_s
        events: list[object] = []
        if press_s is None or frame.time_s < press_s:
            return events
        if release_s is not None and frame.time_s >= release_s:
            if self._turn is not None:
                events.append(self._end(release_s))
            with self._ptt_lock:
                if self._release_s == release_s:
                    self._press_s = self._release_s = None
            return events
        if self._turn is None:
            self._turn, self._start = [], frame
            events.append(SpeechStarted(time_s=press_s))
        self._turn.append(frame)
        self._last_speech = frame
        return events

    # -- hands-free -------------------------------------------------------------------------------

    def _hands_free(self, frame: MicFrame) -> list[object]:
        c = self.config
        raw = self._vad.is_speech(frame.pcm)
        speech, self._previous_speech = raw and self._previous_speech, raw  # one stray frame is no speech
        self._recent.append(frame)
        if self._turn is None:
            self._window.append(raw)
            if sum(self._window) * MIC_FRAME_MS < c.start_voiced_ms:
                return []
            return [self._begin()]
        self._turn.append(frame)
        self._levels_db.append((raw, self._vad.level_db))
        if speech:
            self._last_speech = frame
            self._asked = self._complete = None
            self._paused = False
        assert self._start is not None and self._last_speech is not None
        silence_ms = (frame.index - self._last_speech.index) * MIC_FRAME_MS
        length_ms = (frame.index - self._start.index) * MIC_FRAME_MS
        end_s = self._last_speech.time_s + MIC_FRAME_MS / 1000
        if length_ms >= c.max_turn_ms:
            return [self._end(end_s)]
        if self.judge is None:
            ended: list[object] = [self._end(end_s)] if silence_ms >= c.end_of_turn.silence_only_ms else []
        else:
            ended = self._judged(frame, silence_ms, end_s)
        return ended or self._pause(frame, silence_ms)

    def _judged(self, frame: MicFrame, silence_ms: int, end_s: float) -> list[object]:
        """Ask the judge at a pause; end on its "complete", or at the silence ceiling."""
        assert self.judge is not None and self._turn is not None
        policy = self.config.end_of_turn
        verdict = self.judge.answer(frame.index)
        if silence_ms >= policy.pause_ms and self._asked is None:
            self._asked = frame.index
            self.judge.ask(frame.index, np.concatenate([f.pcm for f in self._turn]))
        if verdict is not None and verdict.ticket == self._asked and verdict.completion >= policy.complete_at:
            self._complete = verdict.completion
        if self._complete is not None and silence_ms >= policy.earliest_ms:
            return [self._end(end_s, completion=self._complete)]
        if silence_ms >= policy.ceiling_ms:
            return [self._end(end_s)]
        return []

    def _pause(self, frame: MicFrame, silence_ms: int) -> list[object]:
        """At the pause's `end_of_turn.pause_ms`: everything of the turn so far out, then
        `SpeechPaused`; later audio waits (`speculate`)."""
        c = self.config
        pause = silence_ms < c.end_of_turn.pause_ms
        if not c.speculate or c.progress_ms <= 0 or self._paused or pause:
            return []
        rest = self._send_rest()
        self._paused = True
        return [*([rest] if rest is not None else []), SpeechPaused(time_s=frame.time_s)]

    def _begin(self) -> SpeechStarted:
        c = self.config
        window = list(self._window)
        recent = list(self._recent)[-len(window) :]
        first_voiced = recent[window.index(True)]
        self._last_speech = first_voiced
        for f, voiced in zip(recent, window, strict=True):
            if voiced:
                self._last_speech = f
        self._start = self._onset(first_voiced)
        pre_roll_frames = c.pre_roll_ms // MIC_FRAME_MS
        self._turn = [f for f in self._recent if f.index >= self._start.index - pre_roll_frames]
        self._window.clear()
        return SpeechStarted(time_s=self._start.time_s)

    def _onset(self, first_voiced: MicFrame) -> MicFrame:
        """The frame the speech began on: `first_voiced`, or the run of loud frames just before it."""
        c = self.config
        floor_db = self._vad.background_db() + c.sound_margin_db
        earliest = first_voiced.index - c.onset_lookback_ms // MIC_FRAME_MS
        onset = first_voiced
        for frame in reversed([f for f in self._recent if earliest <= f.index < first_voiced.index]):
            if level_db(frame.pcm) < floor_db:
                break
            onset = frame
        return onset

    def _sounds(self, frames: list[MicFrame]) -> bool:
        """Whether any of `frames` stands out of the room's background (`ending_margin_db`)."""
        floor_db = self._vad.background_db() + self.config.ending_margin_db
        return any(level_db(f.pcm) >= floor_db for f in frames)

    def _end(self, end_s: float, completion: float | None = None) -> SpeechEnded:
        """The turn's event; `completion` set means the judge ended it before the silence ceiling."""
        c = self.config
        assert self._turn is not None and self._start is not None and self._last_speech is not None
        turn, start, last, paused, sent = self._turn, self._start, self._last_speech, self._paused, self._sent
        self._turn = self._start = self._last_speech = self._asked = self._complete = None
        self._paused = False
        self._sent = 0
        if c.mode == "push_to_talk":
            audio = np.concatenate([f.pcm for f in turn]) if turn else np.zeros(0, np.int16)
            first_s = turn[0].time_s if turn else start.time_s
            return SpeechEnded(audio=audio, start_s=start.time_s, end_s=end_s, audio_start_s=first_s)
        levels, self._levels_db = self._levels_db, []
        too_short = (last.index - start.index + 1) * MIC_FRAME_MS < c.min_turn_ms
        if too_short or not self._vad.stands_out(levels):  # too short, or the background changed
            return SpeechEnded(audio=np.zeros(0, np.int16), start_s=start.time_s, end_s=end_s)
        last_kept = last.index + c.trailing_ms // MIC_FRAME_MS
        kept = [f for f in turn if f.index <= last_kept]
        if paused and not self._sounds(kept[sent:]):
            kept = turn[:sent]  # what the speculative reply heard
        audio = np.concatenate([f.pcm for f in kept])
        return SpeechEnded(
            audio=audio,
            start_s=start.time_s,
            end_s=end_s,
            audio_start_s=turn[0].time_s,
            ended_early=completion is not None,
            completion=completion,
        )
