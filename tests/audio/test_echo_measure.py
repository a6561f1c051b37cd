"""The path measure (`EchoDelay`) without devices: a spoken far end, its echo frame by frame."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from audio_io.echo_delay import KEEP_S, EchoDelay
from audio_io.formats import MIC_FRAME_MS, MIC_FRAME_SAMPLES, MIC_RATE_HZ
from bench.rig.signals import speech

REPLY = "Sure, here is a long answer about the weather tomorrow."


def spoken(text: str) -> np.ndarray:
    return (speech(text, MIC_RATE_HZ) * 2e4).astype(np.int16)


def echo_player(
    delay: EchoDelay, far: np.ndarray | None = None, voice: np.ndarray | None = None
) -> Callable[..., None]:
    """`play(path_s, seconds, alone)`: the far end (a spoken reply, by default four times) and its
    echo over `path_s`, with `voice` in the room over it, frame by frame into `delay`; `alone(k)`
    says whether the levels take frame k for the echo alone."""
    far = np.tile(spoken(REPLY), 4) if far is None else far
    voice = np.zeros_like(far) if voice is None else voice
    fed = [0]

    def play(path_s: float, seconds: float, alone: Callable[[int], bool] = lambda k: True) -> None:
        shift = round(path_s * MIC_RATE_HZ)
        for _ in range(round(seconds * 1000 / MIC_FRAME_MS)):
            k = fed[0]
            frame = slice(k * MIC_FRAME_SAMPLES, (k + 1) * MIC_FRAME_SAMPLES)
            delay.far(k * MIC_FRAME_MS / 1000, far[frame])
            start = k * MIC_FRAME_SAMPLES - shift
            echo = (
                far[start : start + MIC_FRAME_SAMPLES]
                if start >= 0
                else np.zeros(MIC_FRAME_SAMPLES, np.int16)
            )
            delay.mic(k * MIC_FRAME_MS / 1000, echo // 2 + voice[frame] // 2, timed=alone(k))
            fed[0] += 1

    return play


def test_a_path_is_measured_only_on_signal_after_the_clocks_moved() -> None:
    """After a stall a measure spanning it found a 0.41 s path for a 0.16 s one, and the far end fed
    that late leaked whole: after `reset` no measure is taken until a fresh window is in. The path
    and its shift stay meanwhile (the far end's clock moved with the sound, if it moved right)."""
    delay = EchoDelay()
    play = echo_player(delay)
    play(0.4, 3.0)
    assert delay.delay_s == pytest.approx(0.4, abs=0.011)
    shift_s, measures = delay.shift_s, delay.measures
    assert shift_s == pytest.approx(0.4 - KEEP_S, abs=0.011)
    delay.reset()
    play(0.3, 1.5)  # the old path still fills most of any 2 s window
    assert delay.measures == measures and delay.shift_s == shift_s
    play(0.3, 1.5)
    assert delay.delay_s == pytest.approx(0.3, abs=0.011)
    assert delay.shift_s == pytest.approx(0.3 - KEEP_S, abs=0.011)
    delay.drop_shift()  # AEC3 did not converge with it: fed as heard, measured anew
    assert delay.shift_s == 0.0 and np.isnan(delay.delay_s)


def test_the_same_device_plugged_back_is_shown_its_path_short_and_the_shift_follows_it() -> None:
    """A new AEC3 left to find a 0.18 s delay on the rig leaked 4 to 15 dB for a second or two: after
    `relearn` on the same path, the path measured before is fed shifted, though short, and a measure
    after it moves the shift instead of dropping it (a jump for AEC3 to follow, found slowly)."""
    delay = EchoDelay()
    play = echo_player(delay)
    play(0.15, 3.0)
    assert delay.delay_s == pytest.approx(0.15, abs=0.011) and delay.shift_s == 0.0  # AEC3 finds it
    delay.relearn(same_path=True)  # the same device plugged back
    assert delay.shift_s == pytest.approx(0.15 - KEEP_S, abs=0.011)
    play(0.18, 3.0)  # back with a longer path: PulseAudio's reopened monitor on the rig, 5 to 20 ms
    assert delay.delay_s == pytest.approx(0.18, abs=0.011)
    assert delay.shift_s == pytest.approx(0.18 - KEEP_S, abs=0.011)


def test_a_path_is_measured_only_on_enough_echo_alone() -> None:
    """A window that is mostly a voice (a reply's end talked over) is not measured: on the rig, its
    edges taken for echo gave 0.7 s for a 0.15 s path. Half the window of echo alone is enough."""
    delay = EchoDelay()
    play = echo_player(delay)
    play(0.15, 6.0, alone=lambda k: k % 100 < 40)  # 0.8 s of every 2 s window
    assert delay.measures == 0
    play(0.15, 3.0, alone=lambda k: k % 100 < 60)
    assert delay.delay_s == pytest.approx(0.15, abs=0.011)


@pytest.mark.parametrize("path_s", [0.02, 0.15, 0.3])
def test_a_voice_after_the_reply_stopped_moves_no_measure(path_s: float) -> None:
    """The user talks once the reply has stopped (cut by barge-in): for as long as its echo could
    still arrive the levels take the voice for echo. On the rig (the same voices) a measure on it
    gave 0.7 s for a 0.15 s path, and the next reply would have been fed that late."""
    stop = round(1.5 * MIC_RATE_HZ)
    far = np.concatenate([spoken(REPLY)[:stop], np.zeros(4 * MIC_RATE_HZ, np.int16)])
    user = spoken("Wait, stop please, I have another question.")
    voice = np.zeros_like(far)
    voice[stop + 4000 : stop + 4000 + len(user)] = user[: len(far) - stop - 4000]
    delay = EchoDelay()
    play = echo_player(delay, far, voice)
    seen = set()
    for _ in range(50):
        play(path_s, 0.1)
        if math.isfinite(delay.delay_s):
            seen.add(round(delay.delay_s, 3))
    assert seen == {round(path_s, 3)}
