"""The path measure (`EchoDelay`) without devices: a spoken far end, its echo frame by frame."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from audio_io.echo_delay import EchoDelay
from audio_io.formats import MIC_FRAME_MS, MIC_FRAME_SAMPLES, MIC_RATE_HZ
from bench.rig.signals import speech


def echo_player(delay: EchoDelay) -> Callable[..., None]:
    """`play(path_s, seconds, alone)`: a spoken reply's far end and its echo over `path_s`, frame by
    frame, into `delay`; `alone(k)` says whether frame k is the echo alone (else a voice over it)."""
    reply = speech("Sure, here is a long answer about the weather tomorrow.", MIC_RATE_HZ)
    far = (np.tile(reply, 3) * 2e4).astype(np.int16)
    fed = [0]

    def play(path_s: float, seconds: float, alone: Callable[[int], bool] = lambda k: True) -> None:
        shift = round(path_s * MIC_RATE_HZ)
        for _ in range(round(seconds * 1000 / MIC_FRAME_MS)):
            k = fed[0]
            delay.far(k * MIC_FRAME_MS / 1000, far[k * MIC_FRAME_SAMPLES : (k + 1) * MIC_FRAME_SAMPLES])
            start = k * MIC_FRAME_SAMPLES - shift
            echo = (far[start : start + MIC_FRAME_SAMPLES] // 2).astype(np.int16)
            delay.mic(k * MIC_FRAME_MS / 1000, echo, timed=alone(k))
            fed[0] += 1

    return play


def test_a_path_is_measured_only_on_signal_after_the_clocks_moved() -> None:
    """After a stall a measure spanning it found a 0.41 s path for a 0.16 s one, and the far end fed
    that late leaked whole: after `reset` no measure is taken until a fresh window is in."""
    delay = EchoDelay()
    play = echo_player(delay)
    play(0.4, 3.0)
    assert delay.delay_s == pytest.approx(0.4, abs=0.011)
    delay.reset()
    play(0.3, 1.5)  # the old path still fills most of any 2 s window
    assert np.isnan(delay.delay_s)
    play(0.3, 1.5)
    assert delay.delay_s == pytest.approx(0.3, abs=0.011)


def test_a_path_is_measured_only_on_enough_echo_alone() -> None:
    """A window that is mostly a voice (a reply's end talked over) is not measured: on the rig, its
    edges taken for echo gave 0.7 s for a 0.15 s path. Half the window of echo alone is enough."""
    delay = EchoDelay()
    play = echo_player(delay)
    play(0.15, 6.0, alone=lambda k: k % 100 < 40)  # 0.8 s of every 2 s window
    assert delay.measures == 0
    play(0.15, 3.0, alone=lambda k: k % 100 < 60)
    assert delay.delay_s == pytest.approx(0.15, abs=0.011)
