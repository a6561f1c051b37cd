"""A reply leaves the player no faster than real time, whatever pace the host calls back at (`pace`).

The device-free tests script the callback times; the last one plays on ALSA's null device through
real PortAudio, a host that takes every block at once and plays none of them.
"""

from __future__ import annotations

import random
import time

import numpy as np
import pytest

from audio_io.formats import PLAYBACK_RATE_HZ
from audio_io.pace import MARGIN_S, RATE_SLACK, Pace
from audio_io.playback import Player, PlayerConfig
from bench.rig.pulse import DISCARD, VirtualAudio
from events import AudioChunk

RATE = 48_000
BLOCK = RATE // 100
LATENCY_S = 0.03


def _taken(pace: Pace, times: list[float], waiting: int = 10**9) -> int:
    """Samples a ring holding `waiting` gives up to callbacks at `times`."""
    taken = 0
    for now in times:
        if pace.allows(now, BLOCK, waiting - taken):
            n = min(BLOCK, waiting - taken)
            pace.took(n)
            taken += n
    return taken


def test_a_host_at_its_pace_is_never_held_back_however_it_jitters() -> None:
    """Ten minutes of callbacks 2 to 18 ms apart (and in pairs), on a device clock 1 % fast."""
    rng = random.Random(7)
    pace, times = Pace(), []
    pace.reset(RATE, LATENCY_S)
    k = 0
    while k < 60_000:
        due = k * 0.01 / 1.01 + rng.uniform(-0.008, 0.008)
        pair = rng.random() < 0.1  # the next one at once, and none when it was due
        times += [due, due + 0.0001] if pair else [due]
        k += 2 if pair else 1
    _taken(pace, sorted(times))
    assert pace.held_blocks == 0


def test_a_host_taking_blocks_fast_gets_silence_past_real_time_and_the_device_buffer() -> None:
    pace = Pace()
    pace.reset(RATE, LATENCY_S)
    burst = [k * 0.0005 for k in range(2000)]  # a block every 0.5 ms for a second: 20 s asked for
    taken_s = _taken(pace, burst) / RATE
    allowed_s = burst[-1] * RATE_SLACK + LATENCY_S + MARGIN_S
    assert allowed_s - 2 * BLOCK / RATE <= taken_s <= allowed_s + BLOCK / RATE
    assert pace.held_blocks > 1500
    after = [1.0 + k * 0.01 for k in range(1, 300)]  # then at its pace again: nothing held
    held = pace.held_blocks
    _taken(pace, after)
    assert pace.held_blocks == held


def test_after_a_stall_the_host_may_refill_its_buffer_at_once() -> None:
    pace = Pace()
    pace.reset(RATE, LATENCY_S)
    _taken(pace, [k * 0.01 for k in range(100)])
    refill = [1.2 + k * 0.0005 for k in range(round((LATENCY_S + MARGIN_S) * RATE / BLOCK))]
    _taken(pace, refill)
    assert pace.held_blocks == 0


def test_an_empty_ring_holds_nothing_back() -> None:
    pace = Pace()
    pace.reset(RATE, LATENCY_S)
    _taken(pace, [k * 0.0005 for k in range(1000)], waiting=0)
    assert pace.held_blocks == 0


@pytest.mark.audio
@pytest.mark.timeout(60)
def test_a_reply_on_a_device_that_plays_nothing_leaves_at_real_time(devices: VirtualAudio) -> None:
    """ALSA's null device calls back as fast as the callback returns: without the pace the whole
    reply went in a few ms, and the player said it was heard."""
    player = Player(PlayerConfig(device=DISCARD))
    player.start()
    try:
        reply = (0.1 * np.sin(np.arange(PLAYBACK_RATE_HZ * 10) / 10)).astype(np.float32)
        started = time.perf_counter()
        player.write(AudioChunk(1, reply, PLAYBACK_RATE_HZ, 0))
        player.finish_turn(1)
        time.sleep(1.0)
        heard_s = player.played_samples(1) / PLAYBACK_RATE_HZ
        elapsed_s = time.perf_counter() - started
        assert 0.0 < heard_s <= elapsed_s * RATE_SLACK + MARGIN_S + 0.05, (heard_s, elapsed_s)
        assert player.pace.held_blocks > 100  # the host did take blocks fast
        assert player.speaking_turn() == 1
    finally:
        player.stop()
