"""The echo rig: the player's speech looped speaker → microphone, under any delay and gain, with faults.

`EchoRig` holds one set of streams (player, echo path, microphone, a user voice, a monitor recorder)
for a whole run; `condition(delay_ms, gain)` switches the path and starts a fresh echo canceller and
barge-in monitor (as an app starting up would), plays a few replies, measures self-interruptions and
attenuation after the first reply, then has the user talk over one more reply. Barge-in recovers as
the app's default does ("pause": the first speech pauses the reply, a sentence then cuts it), so
`barge_in_ms` is the user's onset at the microphone to the moment the loudspeaker's monitor went
silent after barge-in acted: the pause (with recovery "off", the cut), not the later cut. Shared
by the tests (`tests/audio/test_echo.py`) and the benchmark (`bench.audio`); all timing is read on
the audio clocks.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import soxr

from audio_io.barge_in import BargeInConfig, BargeInMonitor, Recovery
from audio_io.echo_canceller import EchoCancellerConfig
from audio_io.formats import MIC_FRAME_SAMPLES, MIC_RATE_HZ, PLAYBACK_RATE_HZ
from audio_io.gc_freeze import long_lived_frozen
from audio_io.microphone import MicrophoneConfig
from audio_io.playback import Player, PlayerConfig
from audio_io.turn_detector import TurnDetector
from bench.rig.echo_path import EchoPath
from bench.rig.listening import Listening, MeasuredEchoCanceller, play_reply
from bench.rig.pulse import (
    MIC,
    MIC_FEED,
    SINK_RATE_HZ,
    SPEAKER,
    SPEAKER_MONITOR,
    Feeder,
    Recorder,
    wait_flowing,
)
from bench.rig.signals import find_offset, speech
from events import BargeIn

GRID_DELAYS_MS = (20, 60, 150, 300, 500)
GRID_GAINS = (0.25, 0.5, 1.0)
REPLY_TEXTS = (
    "Sure, here is a long answer about the weather tomorrow.",
    "It will be sunny in the morning and rainy in the evening.",
    "Take an umbrella if you go out after six.",
)
USER_TEXT = "Wait, stop please, I have another question."
REPLY_GAP_S = 0.4  # between replies, as a conversation leaves them
USER_AFTER_S = 1.5  # into the last reply, the user talks over it
FED_WITHIN_S = 1.0  # after a path move, by when the hold has fed it (it takes about 0.3 s)
MOVED_WINDOW_S = (0.5, 2.5)  # after a path move, when its echo must be cancelled again
SILENT = 1e-3  # monitor samples below this are silence
QUIET_S = 0.1  # silence this long on the monitor is the reply stopped (paused or cut)
ECHO_TAIL_S = 0.6  # the echo of a reply's end is still arriving this long after it played
MIN_ONSET_MATCH = 0.5  # the user's voice found in the cleaned microphone signal (double talk blurs it)


@dataclass
class Condition:
    """What one (delay, gain) condition measured."""

    delay_ms: float
    gain: float
    replies: int = 0
    echo_s: float = 0.0  # reply audio played over the echo path with no user talking
    self_interruptions: int = 0
    self_pauses: int = 0  # pauses for the reply's own echo (heard as a gap, then it resumes)
    attenuation_db: float | None = None  # after the first reply
    user_barge_in: bool = False
    barge_in_ms: float | None = None  # user onset at the microphone → silence at the speaker monitor
    clock_moves: int = 0  # the devices' clocks moved or stalled (an underrun): the canceller started over
    path_moves: int = 0  # the rig's own echo path moved (`EchoPath.moves`): the hold has to find it
    dropouts: int = 0  # microphone frames that lost sound on the way in: the canceller started over
    notes: list[str] = field(default_factory=list)

    @property
    def self_interruptions_per_min(self) -> float:
        return self.self_interruptions / max(self.echo_s, 1e-9) * 60


def hold_gil(seconds: float) -> None:
    """Stall every Python thread of this process: a C call that keeps the GIL (PyDLL does not release it)."""
    ctypes.PyDLL(None).usleep(int(seconds * 1e6))


def stop_process(seconds: float) -> None:
    """Stall the whole process (every thread, PortAudio's included) with SIGSTOP, then SIGCONT."""
    subprocess.Popen(
        ["sh", "-c", f"kill -STOP {os.getpid()}; sleep {seconds}; kill -CONT {os.getpid()}"],
        start_new_session=True,
    ).wait()


@dataclass
class PathMove:
    """A path made shorter mid-reply: the reply's turn, what the hold fed ahead, and the attenuation
    over `MOVED_WINDOW_S` after the move (None: no echo there)."""

    turn_id: int
    fed_s: float
    attenuation_db: float | None


class ActedPlayer:
    """The player as barge-in sees it, noting when barge-in first paused or cut it (perf_counter)."""

    def __init__(self, player: Player) -> None:
        self.player = player
        self.acted_s: float | None = None
        self.pauses = 0  # every pause, the false ones included (a reply pausing for its own echo)

    def _acted(self) -> None:
        if self.acted_s is None:
            self.acted_s = time.perf_counter()

    def speaking_turn(self) -> int | None:
        return self.player.speaking_turn()

    def flush(self, turn_id: int | None = None) -> int:
        self._acted()
        return self.player.flush(turn_id)

    def set_gain(self, gain: float) -> None:
        self.player.set_gain(gain)

    def pause(self) -> None:
        self._acted()
        self.pauses += 1
        self.player.pause()

    def resume(self) -> None:
        self.player.resume()


class EchoRig:
    """Use as a context manager; the player's events (DeviceLost, BargeIn, ...) land in `player_events`."""

    def __init__(self, recovery: Recovery = "pause", reply_texts: tuple[str, ...] = REPLY_TEXTS) -> None:
        self.player_events: list[object] = []
        self.player = Player(PlayerConfig(device=SPEAKER), on_event=self.player_events.append)
        self.recovery: Recovery = recovery
        self.replies = [speech(text, PLAYBACK_RATE_HZ) for text in reply_texts]
        self.user = speech(USER_TEXT, SINK_RATE_HZ)
        self._turn_id = 100
        self.echo: MeasuredEchoCanceller | None = None
        self._open: list[object] = []
        self._frozen = ExitStack()

    def __enter__(self) -> EchoRig:
        self._frozen.enter_context(long_lived_frozen())  # as the app while its window is up
        try:
            self.player.start()
            self._open.append(self.player)
            wait_flowing(self.player._progress)
            self.path = EchoPath(delay_ms=GRID_DELAYS_MS[0], gain=GRID_GAINS[0])
            self._open.append(self.path)
            self.feeder = Feeder(MIC_FEED)
            self._open.append(self.feeder)
            self.monitor = Recorder(SPEAKER_MONITOR, rate_hz=PLAYBACK_RATE_HZ)
            self._open.append(self.monitor)
            self.listening = Listening(TurnDetector(), mic_config=MicrophoneConfig(device=MIC))
            self.fresh_canceller()
            self.listening.__enter__()
            self._open.append(self.listening)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        """Close whatever was opened, last first (a keeper left running aborts later rigs)."""
        while self._open:
            part = self._open.pop()
            if isinstance(part, Listening):
                part.__exit__()
            elif isinstance(part, Player):
                part.stop()
            else:
                part.close()  # type: ignore[attr-defined]
        self._frozen.close()

    def fresh_canceller(self) -> MeasuredEchoCanceller:
        """A new canceller and barge-in monitor in the running loop: the state of an app just started."""
        mic_latency = self.listening.mic.latency_s
        self.echo = MeasuredEchoCanceller(EchoCancellerConfig(), self.player, input_latency_s=mic_latency)
        self.acted = ActedPlayer(self.player)
        self.listening.loop.barge_in = BargeInMonitor(self.acted, BargeInConfig(recovery=self.recovery))
        self.listening.loop.echo = self.echo
        return self.echo

    def speaker_back(self) -> None:
        """The speaker's sink came back: what listened to its monitor (the echo path, the recorder)
        died with it and opens again."""
        self.path.reopen()
        self._open.remove(self.monitor)
        self.monitor.close()
        self.monitor = Recorder(SPEAKER_MONITOR, rate_hz=PLAYBACK_RATE_HZ)
        self._open.append(self.monitor)

    def next_turn(self) -> int:
        self._turn_id += 1
        return self._turn_id

    @property
    def last_turn(self) -> int:
        return self._turn_id

    def barge_ins(self, turns: range | list[int]) -> list[BargeIn]:
        return [e for e in self.listening.of_type(BargeIn) if e.turn_id in turns]

    def play(self, pcm: np.ndarray) -> int:
        """One whole reply, then its echo tail; returns its turn id."""
        turn_id = self.next_turn()
        play_reply(self.player, turn_id, pcm, PLAYBACK_RATE_HZ)
        self.player.wait_idle(len(pcm) / PLAYBACK_RATE_HZ + 30)
        time.sleep(REPLY_GAP_S)
        return turn_id

    def condition(self, delay_ms: float, gain: float, replies: int = 3, user: bool = True) -> Condition:
        """Fresh canceller at this path: `replies` replies alone, then one the user talks over."""
        self.path.set_path(delay_ms, gain)
        echo = self.fresh_canceller()
        time.sleep(ECHO_TAIL_S)
        resets = echo.delay.resets  # a fresh canceller starts with one when the player ever stalled
        dropouts = echo.dropouts
        path_moves = self.path.moves
        result = Condition(delay_ms, gain)
        first = self._turn_id + 1
        for k in range(replies):
            reply = self.replies[k % len(self.replies)]
            self.play(reply)
            if k == 0 and replies > 1:
                echo.reset_measure()  # attenuation after convergence: from the second reply on
            result.replies += 1
            result.echo_s += len(reply) / PLAYBACK_RATE_HZ
        result.attenuation_db = echo.attenuation_db()
        result.self_interruptions = len(self.barge_ins(range(first, self._turn_id + 1)))
        result.self_pauses = self.acted.pauses
        if user:
            self.talk_over(result)
        result.dropouts = echo.dropouts - dropouts
        result.clock_moves = echo.delay.resets - resets - result.dropouts
        result.path_moves = self.path.moves - path_moves
        return result

    def shorten_mid_reply(self, shorter_ms: float, after_s: float = 3.0) -> PathMove:
        """A long reply over the path, made `shorter_ms` shorter `after_s` into it with no clock
        showing it (`EchoPath.shorten`); with what the hold fed ahead in the `FED_WITHIN_S` after,
        and how well the echo was cancelled in `MOVED_WINDOW_S` after it.

        The feed is read across the move alone: over a whole condition the rig's own path also
        moves (its ring trims a backlog, plays silence when dry) and the hold rightly feeds that too.
        """
        turn_id = self.next_turn()
        reply = (self.player, turn_id, np.concatenate(self.replies), PLAYBACK_RATE_HZ)
        writer = threading.Thread(target=play_reply, args=reply)
        writer.start()
        time.sleep(after_s)
        assert self.echo is not None, "shorten_mid_reply runs in a condition"
        delay = self.echo.delay
        ahead_s = delay.ahead_s
        self.path.shorten(shorter_ms)
        moved_s = time.perf_counter()
        time.sleep(FED_WITHIN_S)
        fed_s = delay.ahead_s - ahead_s
        writer.join()
        self.player.wait_idle(20)
        since, until = MOVED_WINDOW_S
        return PathMove(turn_id, fed_s, self.echo.attenuation_db_between(moved_s + since, moved_s + until))

    def talk_over(self, result: Condition) -> None:
        """A long reply; `USER_AFTER_S` into it the user speaks; it must stop, and soon."""
        turn_id = self.next_turn()
        play_reply(self.player, turn_id, np.concatenate(self.replies), PLAYBACK_RATE_HZ)
        time.sleep(USER_AFTER_S)
        result.echo_s += USER_AFTER_S
        result.self_pauses = self.acted.pauses
        if self.barge_ins([turn_id]):
            result.self_interruptions += 1
            result.notes.append("interrupted itself before the user spoke")
            return
        self.acted.acted_s = None
        echo, pauses = self.echo, self.acted.pauses
        assert echo is not None, "talk_over runs in a condition"
        dropouts, resets = echo.dropouts, echo.delay.resets
        onset = self.feeder.play(self.user)
        deadline = time.monotonic() + 5
        while not self.barge_ins([turn_id]) and time.monotonic() < deadline:
            time.sleep(0.01)
        while self.feeder.busy():
            time.sleep(0.02)
        time.sleep(0.3)
        result.user_barge_in = bool(self.barge_ins([turn_id]))
        self.player.flush(turn_id)
        if not result.user_barge_in:
            heard = self.heard_onset(onset[0]) if onset else None
            result.notes.append(
                f"the user was missed: the reply paused {self.acted.pauses - pauses} times while they"
                f" spoke, {echo.dropouts - dropouts} frames lost sound and the clocks moved"
                f" {echo.delay.resets - resets} times; over their first 2 s, "
                + (echo.judged_between(heard, heard + 2.0) if heard else "nothing: the rig never played them")
            )
        if result.user_barge_in and onset and self.acted.acted_s is not None:
            result.barge_in_ms = self.silence_after(self.heard_onset(onset[0]), self.acted.acted_s)
            if result.barge_in_ms is not None and result.barge_in_ms <= 0:  # its own echo stopped it
                result.notes.append("went silent by itself just before the user was heard")
                result.self_interruptions += 1
                result.user_barge_in, result.barge_in_ms = False, None
        time.sleep(ECHO_TAIL_S)

    def heard_onset(self, played_s: float) -> float:
        """When the microphone captured the user's first sample (found in its cleaned recording by
        cross-correlation): the time the feeder claims can be off by the sink's buffering."""
        audio, _, times = self.listening.recording()
        start = max(0, int(np.searchsorted(times, played_s - 1.0)))
        tail = audio[start * MIC_FRAME_SAMPLES :].astype(np.float32) / 32768
        user = np.asarray(soxr.resample(self.user, SINK_RATE_HZ, MIC_RATE_HZ), dtype=np.float32)
        if len(tail) <= len(user):
            return played_s
        offset, quality = find_offset(tail, user)
        if quality < MIN_ONSET_MATCH:
            return played_s
        k = start + offset // MIC_FRAME_SAMPLES
        return float(times[k]) + (offset % MIC_FRAME_SAMPLES) / MIC_RATE_HZ

    def silence_after(self, onset_s: float, acted_s: float) -> float | None:
        """ms from `onset_s` to the first `QUIET_S` of silence on the speaker monitor that starts
        after barge-in acted at `acted_s` (paused the reply, or cut it): when the user heard it stop.
        The reply's own pauses before that moment do not count."""
        recorded = self.monitor.samples()
        start = max(0, self.monitor.index_at(min(onset_s, acted_s)))
        quiet_n = round(QUIET_S * PLAYBACK_RATE_HZ)
        loud = (np.abs(recorded[start:]) > SILENT).astype(np.int32)
        if loud.size < quiet_n:
            return None
        quiet = np.flatnonzero(np.convolve(loud, np.ones(quiet_n, np.int32), mode="valid") == 0)
        acted_at = self.monitor.index_at(acted_s) - start
        quiet = quiet[quiet >= acted_at]
        if not len(quiet):
            return None
        return (self.monitor.time_of(start + int(quiet[0])) - onset_s) * 1000

    def gap_at(self, since_s: float, until_s: float) -> tuple[float, float]:
        """(seconds after `since_s`, ms) of the longest silence on the speaker monitor."""
        recorded = self.monitor.samples()
        a, b = self.monitor.index_at(since_s), self.monitor.index_at(until_s)
        loud = np.flatnonzero(np.abs(recorded[a:b]) > SILENT)
        if len(loud) < 2:
            return 0.0, (b - a) / PLAYBACK_RATE_HZ * 1000
        k = int(np.argmax(np.diff(loud)))
        return self.monitor.time_of(a + int(loud[k])) - since_s, float(
            loud[k + 1] - loud[k]
        ) / PLAYBACK_RATE_HZ * 1000

    def longest_gap_ms(self, since_s: float, until_s: float) -> float:
        """The longest stretch of silence on the speaker monitor between two perf_counter times."""
        recorded = self.monitor.samples()
        a, b = self.monitor.index_at(since_s), self.monitor.index_at(until_s)
        loud = np.flatnonzero(np.abs(recorded[a:b]) > SILENT)
        if len(loud) < 2:
            return (b - a) / PLAYBACK_RATE_HZ * 1000
        return float(np.max(np.diff(loud))) / PLAYBACK_RATE_HZ * 1000
