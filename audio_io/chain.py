"""The real audio edges of the app's session: the microphone chain and the player (no Qt here).

`MicrophoneChain` is the session's `AudioInput`: microphone → echo canceller → barge-in monitor and
turn detector (the end-of-turn model on a thread of its own), on the audio layer's threads.
`MeteredPlayer` is the engine worker's speech output and the session's playback, with the level of
what is being heard for the meter.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from events import AudioChunk
from facts import SPEECH_OUT_RATE_HZ

SILENT_DBFS = -90.0
METER_WINDOW_S = 0.05


def dbfs(samples: np.ndarray, full_scale: float) -> float:
    if samples.size == 0:
        return SILENT_DBFS
    rms = float(np.sqrt(np.mean(np.square(samples.astype(np.float64))))) / full_scale
    return max(SILENT_DBFS, 20 * math.log10(rms)) if rms > 0 else SILENT_DBFS


class MeteredPlayer:
    """Wraps `audio_io.playback.Player`; remembers the current turn's audio to meter what is heard."""

    def __init__(self, player: Any) -> None:
        self.player = player
        self._lock = threading.Lock()
        self._turn_id: int | None = None
        self._chunks: list[np.ndarray] = []
        self._starts: list[int] = []
        self._total = 0

    def start(self) -> None:
        """Open the speaker, or wait for it: a speaker that is not there yet is taken up when it is."""
        self.player.start(wait_for_device=True)

    def stop(self) -> None:
        self.player.stop()

    def swap(self, player: Any) -> Any:
        """Play through `player` (started) from now on; returns the old one with its turn cut, so a
        writer waiting on its full ring returns. A reply in progress carries on on the new device."""
        old = self.player
        self.player = player
        old.flush()
        return old

    def start_turn(self, turn_id: int) -> None:
        self.player.start_turn(turn_id)
        with self._lock:
            self._turn_id, self._chunks, self._starts, self._total = turn_id, [], [], 0

    def write(self, chunk: AudioChunk) -> bool:
        with self._lock:
            if chunk.turn_id == self._turn_id:
                pcm = np.asarray(chunk.pcm, dtype=np.float32).reshape(-1)
                self._chunks.append(pcm)
                self._starts.append(self._total)
                self._total += pcm.size
        return bool(self.player.write(chunk))

    def finish_turn(self, turn_id: int) -> None:
        self.player.finish_turn(turn_id)

    def flush(self, turn_id: int | None = None) -> int:
        return int(self.player.flush(turn_id))

    def speaking_turn(self) -> int | None:
        turn: int | None = self.player.speaking_turn()
        return turn

    def played_samples(self, turn_id: int) -> int:
        return int(self.player.played_samples(turn_id))

    def level_dbfs(self) -> float:
        """The level of the last 50 ms the user heard (24 kHz samples of the current turn)."""
        with self._lock:
            turn_id, chunks, starts = self._turn_id, list(self._chunks), list(self._starts)
        if turn_id is None or not chunks or self.player.speaking_turn() != turn_id:
            return SILENT_DBFS
        end = self.player.played_samples(turn_id)
        begin = max(0, end - int(SPEECH_OUT_RATE_HZ * METER_WINDOW_S))
        first = max(0, bisect.bisect_right(starts, begin) - 1)
        last = bisect.bisect_right(starts, end)
        window = np.concatenate(chunks[first:last]) if last > first else np.zeros(0, np.float32)
        offset = starts[first] if first < len(starts) else 0
        return dbfs(window[begin - offset : end - offset], 1.0)


class MicrophoneChain:
    """The session's `AudioInput` on real devices (`app.session_parts.AudioInput`)."""

    def __init__(
        self,
        player: MeteredPlayer,
        *,
        device: str = "",
        echo_cancellation: bool = True,
        barge_in: bool = True,
        end_of_turn_silence_ms: int = 500,
        responsiveness: str = "balanced",
        backchannels: str = "pause",
    ) -> None:
        self.player = player
        self.device = device or None
        self.echo_cancellation = echo_cancellation
        self.barge_in_enabled = barge_in
        self.end_of_turn_silence_ms = end_of_turn_silence_ms  # used only without the end-of-turn model
        self.responsiveness = responsiveness
        self.backchannels = backchannels
        self.mode = "hands-free"
        self.muted = False
        self._level = SILENT_DBFS
        self._on_event: Callable[[object], None] = lambda event: None
        self._mic: Any = None
        self._loop: Any = None
        self._monitor: Any = None
        self._judge: Any = None

    def start(self, on_event: Callable[[object], None]) -> None:
        """Open the microphone (raises `UnknownDeviceError` or `OSError` when it cannot)."""
        from audio_io.audio_loop import AudioLoop
        from audio_io.barge_in import BargeInMonitor
        from audio_io.echo_canceller import EchoCanceller, EchoCancellerConfig
        from audio_io.microphone import Microphone, MicrophoneConfig

        self._on_event = on_event
        self._mic = Microphone(MicrophoneConfig(device=self.device), on_event=self._deliver)
        self._mic.start(wait_for_device=True)  # a microphone that is not there yet is waited for
        echo = None
        if self.echo_cancellation:
            echo = EchoCanceller(EchoCancellerConfig(), self.player.player, self._mic.latency_s)
        self._judge = end_of_turn_judge()
        self._monitor = BargeInMonitor(self.player.player, self._barge_in_config())
        self._loop = AudioLoop(
            self._mic,
            self._turns(),
            self._deliver,
            echo=echo,
            barge_in=None if self.muted else self._monitor,
            on_frame=self._meter,
        )
        self._loop.start()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.stop()
        if self._mic is not None:
            self._mic.stop()
        if self._judge is not None:
            self._judge.close()
        self._loop = self._mic = self._judge = None

    def _turns(self) -> Any:
        from dataclasses import replace

        from audio_io.end_of_turn import policy_for
        from audio_io.turn_detector import TurnConfig, TurnDetector, TurnMode

        mode: TurnMode = "push_to_talk" if self.mode == "push-to-talk" else "hands_free"
        policy = replace(policy_for(self.responsiveness), silence_only_ms=self.end_of_turn_silence_ms)
        return TurnDetector(TurnConfig(mode=mode, end_of_turn=policy), judge=self._judge)

    def _barge_in_config(self) -> Any:
        from audio_io.barge_in import BargeInConfig

        return BargeInConfig(enabled=self.barge_in_enabled, recovery=self.backchannels)  # type: ignore[arg-type]

    def set_responsiveness(self, responsiveness: str) -> None:
        """Eager, balanced or patient, from the next frame on (a turn in progress keeps its audio)."""
        from dataclasses import replace

        from audio_io.end_of_turn import policy_for

        policy = replace(policy_for(responsiveness), silence_only_ms=self.end_of_turn_silence_ms)
        self.responsiveness = responsiveness
        if self._loop is not None:
            turns = self._loop.turns
            turns.config = replace(turns.config, end_of_turn=policy)

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        if self._loop is not None:
            self._loop.turns = self._turns()

    def set_muted(self, muted: bool) -> None:
        """Muted: no turns, no barge-in, a silent meter; the device stays open."""
        self.muted = muted
        if self._loop is not None:
            self._loop.barge_in = None if muted else self._monitor
            if not muted:
                self._loop.turns = self._turns()

    def press(self) -> None:
        if self._loop is not None:
            self._loop.turns.press()

    def release(self) -> None:
        if self._loop is not None:
            self._loop.turns.release()

    def level_dbfs(self) -> float:
        return SILENT_DBFS if self.muted else self._level

    def _meter(self, frame: Any) -> None:
        self._level = dbfs(frame.pcm, 32768.0)

    def _deliver(self, event: object) -> None:
        from events import DeviceLost

        if self.muted and not isinstance(event, DeviceLost):
            return
        self._on_event(event)


def end_of_turn_judge() -> Any:
    """The end-of-turn model on its own thread, or None (silence alone ends turns) without its file."""
    from audio_io.model_files import SMART_TURN

    if not SMART_TURN.path.is_file():
        import logging

        logging.getLogger(__name__).warning("no end-of-turn model (run scripts/setup): silence ends turns")
        return None
    from audio_io.smart_turn import SmartTurn
    from audio_io.turn_judge import ThreadedJudge

    return ThreadedJudge(lambda: SmartTurn().completion)


def make_player(device: str = "", on_event: Callable[[object], None] | None = None) -> MeteredPlayer:
    """A player on `device`; `start()` opens it (raising `UnknownDeviceError` or `OSError`)."""
    from audio_io.playback import Player, PlayerConfig

    return MeteredPlayer(Player(PlayerConfig(device=device or None), on_event=on_event))
