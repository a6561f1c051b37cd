"""Echo cancellation and barge-in that hold up: long paths, a device coming back, stalls, double talk.

The PulseAudio tests run one `EchoRig` (player, echo path speaker → microphone, a user's voice, a
monitor of the speaker) and judge on the audio clocks: barge-in events per reply, echo energy in and
out of the canceller, silence on the speaker's monitor. The grid is `slow` (about 40 s a row). They
are expected to fail only on a machine loaded beyond its cores by other jobs (`UNDER_LOAD`), where
stream underruns move the echo faster than anything can follow. Open failures, marked xfail: a
stall in the middle of a reply, and replies right after the output device came back (the cut, the
`BargeIn` and the recovery of attenuation hold; a self-interruption in the first replies does not).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from audio_io.formats import PLAYBACK_RATE_HZ
from audio_io.stream_clock import StreamClock
from audio_io.stream_keeper import RetryConfig, StreamKeeper, StreamRestarted
from events import BargeIn, DeviceLost
from tests.audio.echo_rig import GRID_DELAYS_MS, GRID_GAINS, EchoRig, hold_gil, stop_process
from tests.audio.pulse import VirtualAudio, wait_flowing
from tests.audio.rig import play_reply
from tests.audio.test_devices import harmonic_voice

LOADED = os.getloadavg()[0] > (os.cpu_count() or 1)
UNDER_LOAD = pytest.mark.xfail(
    LOADED,
    reason="machine overloaded by other jobs: stream underruns move the echo for seconds (bench README)",
    strict=False,
)
MIN_ATTENUATION_DB = 20.0
MAX_GAP_MS = 200.0
STALL_S = 0.15


# -- no device ---------------------------------------------------------------------------------------


def test_stream_clock_follows_a_shifted_timeline_and_a_new_stream() -> None:
    clock = StreamClock(window_s=0.5, slack_s=0.003, gap_s=0.08)
    jitter = np.random.default_rng(0).uniform(0, 0.004, 400)
    for k in range(100):  # 1 s of 10 ms callbacks, some late: the earliest estimate wins
        clock.update(k * 0.01, 5.0 + jitter[k])
    assert clock.anchor_s == pytest.approx(5.0, abs=0.0005)
    for k in range(100, 200):  # an underrun the device filled with 50 ms of silence, no callback gap
        clock.update(k * 0.01, 5.05 + jitter[k])
    assert clock.anchor_s == pytest.approx(5.05, abs=0.0005)
    clock.update(2.2, 5.2)  # a 200 ms stall: re-anchored at once
    assert clock.anchor_s == pytest.approx(5.2)
    clock.reset()
    clock.update(3.0, 9.0)
    assert clock.anchor_s == 9.0


class FakeStream:
    """A stream whose callback is a thread; `stop_calling()` makes it go silent without finishing."""

    def __init__(self) -> None:
        self.calls = 0
        self.silent = False
        self._closed = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._closed.wait(0.01):
            if not self.silent:
                self.calls += 1

    def close(self, ignore_errors: bool = True) -> None:
        self._closed.set()


def test_watchdog_restarts_a_silent_stream_but_not_a_stalled_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from audio_io import stream_keeper
    from audio_io.devices import AudioDevice

    device = AudioDevice(0, "fake", 0, 1, 48_000.0, False, True)
    monkeypatch.setattr(stream_keeper, "find_device", lambda name, kind: device)
    streams: list[FakeStream] = []
    events: list[object] = []

    def open_stream(device: AudioDevice, finished: object) -> FakeStream:
        streams.append(FakeStream())
        return streams[-1]

    keeper = StreamKeeper(
        "output", "fake", open_stream, lambda: sum(s.calls for s in streams), events.append, RetryConfig()
    )
    keeper.start()
    try:
        wait_flowing(lambda: sum(s.calls for s in streams), blocks=30)
        hold_gil(0.4)  # the whole process stalls: no restart
        time.sleep(0.3)
        assert events == [] and len(streams) == 1
        streams[0].silent = True  # the stream alone stops calling back
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not events:
            time.sleep(0.01)
        assert [type(e) for e in events] == [StreamRestarted] and len(streams) == 2
        restarted = events[0]
        assert isinstance(restarted, StreamRestarted) and restarted.kind == "output"
        assert 450 <= restarted.gap_ms < 900
        wait_flowing(lambda: streams[1].calls, blocks=10)
    finally:
        keeper.stop()


# -- PulseAudio ------------------------------------------------------------------------------------


@pytest.fixture
def rig(devices: VirtualAudio) -> Iterator[EchoRig]:
    with EchoRig() as echo_rig:
        yield echo_rig


@pytest.mark.audio
@pytest.mark.slow
@pytest.mark.timeout(240)
@UNDER_LOAD
@pytest.mark.parametrize("delay_ms", GRID_DELAYS_MS)
def test_grid_no_self_interruption_attenuation_and_the_user_still_interrupts(
    rig: EchoRig, delay_ms: float
) -> None:
    """Each gain with a fresh canceller (an app just started): replies alone never interrupt
    themselves, the echo is 20 dB down after the first reply, and a user talking over one stops it."""
    results = [rig.condition(delay_ms, gain) for gain in GRID_GAINS]
    summary = [(r.gain, r.self_interruptions, r.attenuation_db, r.user_barge_in, r.notes) for r in results]
    for r in results:
        assert r.self_interruptions == 0, summary
        assert r.attenuation_db is not None and r.attenuation_db >= MIN_ATTENUATION_DB, summary
        assert r.user_barge_in, summary


@pytest.mark.audio
@pytest.mark.timeout(180)
@pytest.mark.xfail(reason="replies right after the reopen can still interrupt themselves: open", strict=False)
def test_output_device_back_mid_reply_cuts_it_and_the_echo_is_cancelled_again(
    rig: EchoRig, devices: VirtualAudio
) -> None:
    """Unplugged mid-reply: the reply is cut where the user stopped hearing it (`BargeIn` after
    `DeviceLost`); plugged back: replies over the echo path do not interrupt themselves and the echo
    is 20 dB down again within a few seconds."""
    rig.condition(150, 0.5, replies=1, user=False)
    turn_id = rig.next_turn()
    play_reply(rig.player, turn_id, np.concatenate(rig.replies), PLAYBACK_RATE_HZ)
    time.sleep(1.5)
    devices.unload_sink("speaker")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(isinstance(e, BargeIn) for e in rig.player_events):
        time.sleep(0.02)
    kinds = [type(e) for e in rig.player_events]
    assert DeviceLost in kinds and BargeIn in kinds and kinds.index(DeviceLost) < kinds.index(BargeIn)
    cut = next(e for e in rig.player_events if isinstance(e, BargeIn))
    assert cut.turn_id == turn_id
    assert 1.0 * PLAYBACK_RATE_HZ < cut.heard_samples < 2.0 * PLAYBACK_RATE_HZ
    devices.load_sink("speaker")
    wait_flowing(rig.player._progress, timeout_s=20)
    rig.path.reopen()
    rig.monitor.close()
    back_s = time.perf_counter()
    assert rig.player.speaking_turn() is None  # the rest of the cut reply does not play
    echo = rig.echo
    assert echo is not None
    first = rig._turn_id + 1
    for reply in rig.replies:
        rig.play(reply)
    assert rig.barge_ins(range(first, rig._turn_id + 1)) == []
    recovered_s = echo.recovered_s(back_s, MIN_ATTENUATION_DB)
    assert recovered_s is not None and recovered_s <= 3.0


@pytest.mark.audio
@pytest.mark.timeout(180)
@pytest.mark.xfail(reason="after a stall mid-reply AEC3 can lose the echo for ~1 s and barge-in fires: open")
@pytest.mark.parametrize("stall", [hold_gil, stop_process], ids=["gil", "sigstop"])
def test_stalls_between_and_during_replies(rig: EchoRig, stall: object) -> None:
    """150 ms stalls of the whole process, between replies and in the middle of one: no reply
    interrupts itself and the speaker is never silent for more than 200 ms inside a reply."""
    stall_for = stall if callable(stall) else hold_gil
    rig.condition(150, 0.5, replies=1, user=False)
    first = rig._turn_id + 1
    stall_for(STALL_S)
    rig.play(rig.replies[0])
    reply = harmonic_voice(5.0, PLAYBACK_RATE_HZ)
    turn_id = rig.next_turn()
    writer = threading.Thread(target=play_reply, args=(rig.player, turn_id, reply, PLAYBACK_RATE_HZ))
    writer.start()
    time.sleep(0.5)
    start_s = time.perf_counter()
    time.sleep(1.5)
    stall_for(STALL_S)
    writer.join()
    rig.player.wait_idle(20)
    end_s = time.perf_counter() - 0.2
    time.sleep(0.4)
    rig.play(rig.replies[1])
    assert rig.barge_ins(range(first, rig._turn_id + 1)) == []
    assert rig.longest_gap_ms(start_s, end_s) <= MAX_GAP_MS
