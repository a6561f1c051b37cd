"""The echo meter (`EchoMeter`) and the linear filter's checks, without devices: what barge-in
believes of a microphone while a reply plays, frame by frame."""

from __future__ import annotations

import math
import time

import numpy as np

from audio_io.echo_delay import EchoDelay
from audio_io.echo_state import ECHO_COPY_MATCH, LEARN_S, LINEAR_LOST_FRAMES, STALL_HOLD_S, EchoMeter
from audio_io.formats import MIC_FRAME_MS, MIC_FRAME_SAMPLES, MIC_RATE_HZ
from audio_io.linear_echo import PRE_S, FarLine, LinearEcho
from bench.rig.signals import speech


def test_with_no_echo_path_a_soft_voice_is_evidence_once_the_reply_was_heard() -> None:
    """The failure that reverted the first attempt: no echo comes back (the app's end-to-end rig,
    headphones), so the canceller never converges; the echo bound must still fall to the floor."""
    meter = EchoMeter()
    far, voice = 3e7, 3e5  # the reply at -15 dBFS, a voice 20 dB under it
    state = meter.state
    for _ in range(round(LEARN_S * 1000 / MIC_FRAME_MS) + 5):
        meter.far_frame(far)
        state = meter.frame(raw_power=0.5, residual_power=0.5)  # the microphone hears nothing
    assert state.converged and state.echo_bound < 1e3
    meter.far_frame(far)
    assert meter.frame(raw_power=voice, residual_power=voice).near_evidence_db > 20


def test_an_echo_as_loud_as_the_reply_is_no_evidence_before_convergence() -> None:
    meter = EchoMeter()
    for _ in range(round(LEARN_S * 1000 / MIC_FRAME_MS) + 5):
        meter.far_frame(3e7)
        state = meter.frame(raw_power=3e7, residual_power=3e7)  # AEC3 has removed nothing yet
    assert not state.converged and state.near_evidence_db < 6


def test_a_far_end_clock_lost_while_the_echo_goes_on_unconverges_the_canceller() -> None:
    """For half a second after a late callback the player re-estimates its clock (inf) and nothing
    is fed to AEC3, so the echo passes whole: a canceller still counted as converged let the reply's
    own echo barge in (up to 7 a minute in bench.audio's 40 ms path on a loaded machine)."""
    meter = EchoMeter()
    assert not meter.clock(math.inf) and not meter.clock(10.0)  # not playing yet, then anchored: no move
    for _ in range(round(LEARN_S * 1000 / MIC_FRAME_MS) + 120):
        meter.far_frame(3e7)
        state = meter.frame(raw_power=3e6, residual_power=3e0)
    assert state.converged and not meter.clock(10.001)
    meter.clock(math.inf)
    assert not meter.frame(raw_power=3e6, residual_power=3e6).converged  # the echo, uncancelled
    assert meter.frame(raw_power=3e6, residual_power=3e6).near_evidence_db < 6
    assert not meter.clock(10.002)  # found again where it was: nothing more to prove
    meter.clock(math.inf)
    assert meter.clock(10.1)  # found elsewhere: the echo moved


def test_a_canceller_that_loses_the_echo_during_a_hold_is_not_converged_after_it() -> None:
    """Traced on the rig under load: within the hold after a stall, AEC3 cancelled, then lost the echo
    (a new measure moved it) and leaked it; the ERLE of the frames before falls slowly, so as the hold
    ended the canceller counted as converged, and the leak as a voice: the reply paused."""
    meter = EchoMeter()
    for _ in range(round(LEARN_S * 1000 / MIC_FRAME_MS) + 120):
        meter.far_frame(3e7)
        state = meter.frame(raw_power=3e6, residual_power=3e0)
    assert state.converged
    meter.restart(STALL_HOLD_S)
    hold = round(STALL_HOLD_S * 1000 / MIC_FRAME_MS)
    for k in range(hold + 20):
        meter.far_frame(3e7)
        state = meter.frame(raw_power=3e6, residual_power=3e0 if k < hold - 50 else 3e6 / 4)  # 6 dB off
    assert not state.converged and state.near_evidence_db < 6


def test_a_copy_of_the_far_end_that_aec3_left_unconverges_the_canceller() -> None:
    """A microphone that is plainly the far end (match 0.999: any voice 27 dB under it) with AEC3
    taking only 13 dB off: AEC3 lost the echo, whatever its ERLE said. A soft voice under the echo
    (match 0.985, the residual the voice 17 dB under it) leaves it converged: double talk must not
    take the credit away."""
    meter = EchoMeter()
    for _ in range(round(LEARN_S * 1000 / MIC_FRAME_MS) + 120):
        meter.far_frame(3e7)
        meter.frame(raw_power=3e6, residual_power=3e0)
    meter.matched(0.985)
    meter.far_frame(3e7)
    meter.frame(raw_power=3e6, residual_power=3e6 / 50)
    meter.matched(0.985)
    meter.far_frame(3e7)
    assert meter.frame(raw_power=3e6, residual_power=3e0).converged
    meter.frame(raw_power=3e6, residual_power=3e6 / 20)
    meter.matched(0.999)
    meter.far_frame(3e7)
    assert not meter.frame(raw_power=3e6, residual_power=3e6 / 20).converged


def test_what_was_played_before_the_output_died_stops_counting_as_far_end() -> None:
    """A lost output device plays nothing more: its last loud frame must not keep the far end
    'active' for ever (the coupling was then relearnt from a microphone with no echo at all)."""
    meter = EchoMeter()
    meter.played(time.perf_counter() - 5.0, 3e7)
    assert not meter.frame(raw_power=0.5, residual_power=0.5).far_active
    meter.played(time.perf_counter(), 3e7)
    assert meter.frame(raw_power=0.5, residual_power=0.5).far_active


def test_a_microphone_that_copies_the_far_end_is_told_from_a_voice_over_it() -> None:
    """The check that stops a reply pausing for an echo AEC3 lost (after a stall): the far end's copy
    matches whatever its delay and level, a voice as loud as the echo over it does not, and a copy
    the levels took for a voice is no evidence of one."""
    n = 2 * MIC_RATE_HZ
    far = (speech("Sure, here is a long answer about the weather tomorrow.", MIC_RATE_HZ)[:n] * 2e4).astype(
        np.int16
    )
    voice = (speech("Wait, stop please, I have another question.", MIC_RATE_HZ)[:n] * 2e4).astype(np.int16)
    path = round(0.3 * MIC_RATE_HZ)  # a Bluetooth speaker's delay
    echo = np.concatenate([np.zeros(path, np.int16), (far[:-path] * 0.25).astype(np.int16)])
    over = echo + (voice * 0.25).astype(np.int16)  # double talk, the voice as loud as the echo

    def matched(mic: np.ndarray, far_end: np.ndarray) -> float:
        delay = EchoDelay()
        for k in range(len(mic) // MIC_FRAME_SAMPLES):
            frame = slice(k * MIC_FRAME_SAMPLES, (k + 1) * MIC_FRAME_SAMPLES)
            delay.far(k * MIC_FRAME_MS / 1000, far_end[frame])
            delay.mic(k * MIC_FRAME_MS / 1000, mic[frame])
        return delay.match()

    assert matched(echo, far) > ECHO_COPY_MATCH
    assert matched(over, far) < 0.85
    assert matched(voice, far) < 0.5
    assert matched(echo, np.zeros(n, np.int16)) == 0.0

    meter = EchoMeter()
    for _ in range(round(LEARN_S * 1000 / MIC_FRAME_MS) + 120):
        meter.far_frame(3e7)
        state = meter.frame(raw_power=3e6, residual_power=3e0)  # a converged canceller: 60 dB off
    assert state.converged
    state = meter.frame(raw_power=3e6, residual_power=3e6)  # it lost the echo: levels say "a voice"
    assert state.near_evidence_db > 6
    assert meter.matched(0.9).near_evidence_db > 6  # a voice 9 dB under the echo still counts
    assert meter.matched(0.99).near_evidence_db == 0.0


def test_the_linear_filter_hears_a_voice_from_its_first_frame_over_the_echo() -> None:
    """AEC3's suppressor ducks the first 50 to 70 ms of a voice that starts over the echo; the linear
    filter's residual has no suppressor: once converged the voice is evidence from its first frames,
    the echo alone never is, before the voice or after it (adaptation stopped while it spoke)."""
    rng = np.random.default_rng(3)
    reply = speech("Sure, here is a long answer about the weather tomorrow.", MIC_RATE_HZ) * 2e4
    far = np.tile(reply, 3)[: 9 * MIC_RATE_HZ].astype(np.float64)
    path, onset, until = round(0.15 * MIC_RATE_HZ), 6 * MIC_RATE_HZ, 7 * MIC_RATE_HZ
    echo = np.concatenate([np.zeros(path), 0.5 * far[:-path]]) + rng.normal(0, 3, len(far))
    voice = np.zeros(len(far))
    voice[onset:until] = (
        speech("Wait, stop please, I have another question.", MIC_RATE_HZ)[: until - onset] * 1e4
    )
    mic = echo + voice  # from 6 s to 7 s, the voice about 6 dB under the echo

    def power(x: np.ndarray, k: int) -> float:
        return float(np.mean(x[k * MIC_FRAME_SAMPLES : (k + 1) * MIC_FRAME_SAMPLES] ** 2))

    voiced = [k for k in range(len(far) // MIC_FRAME_SAMPLES) if power(voice, k) > 1e5]
    first, ducked = voiced[0], 7  # AEC3 passes the voice from 70 ms on, and 30 dB of the echo
    meter, linear, line = EchoMeter(), LinearEcho(), FarLine()
    evidence = []
    for k in range(len(far) // MIC_FRAME_SAMPLES):
        frame = slice(k * MIC_FRAME_SAMPLES, (k + 1) * MIC_FRAME_SAMPLES)
        line.push(k * MIC_FRAME_MS / 1000, far[frame])
        meter.far_frame(power(far, k))
        passed = power(voice, k) if k >= first + ducked else power(voice, k) / 1e3
        state = meter.frame(raw_power=power(mic, k), residual_power=power(echo, k) / 1e3 + passed)
        block = line.block(k * MIC_FRAME_MS / 1000 - path / MIC_RATE_HZ + PRE_S)
        if block is not None:
            state = meter.linear(float(np.mean(linear.residual(block, mic[frame]) ** 2)))
            if state.near_evidence_db < 6 and not meter.linear_voice:
                linear.adapt()
        evidence.append(state.near_evidence_db if state.far_active else 0.0)
    assert meter.linear_converged
    assert max(evidence[first : first + 3]) >= 6, evidence[first - 2 : first + 5]
    echo_alone = evidence[300 : onset // MIC_FRAME_SAMPLES] + evidence[until // MIC_FRAME_SAMPLES + 20 :]
    assert max(echo_alone) < 6, max(echo_alone)
    assert np.mean([evidence[k] >= 6 for k in voiced]) > 0.8


def test_a_linear_filter_that_lost_the_echo_is_not_believed() -> None:
    """The far end as fed missed the echo at an onset (seen on the rig), or the path moved under the
    filter (which stops adapting while it hears a voice): its residual is then the echo itself."""
    meter = EchoMeter()
    for _ in range(round(LEARN_S * 1000 / MIC_FRAME_MS) + 120):
        meter.far_frame(3e7)
        meter.frame(raw_power=3e6, residual_power=3e0)
        meter.linear(3e2)  # 40 dB off
    assert meter.linear_converged
    meter.frame(raw_power=3e6, residual_power=3e0)  # AEC3 ducks a voice that starts as the echo quiets
    assert meter.linear(3e6 * 0.95).near_evidence_db > 6  # the voice is most of the microphone
    meter.frame(raw_power=3e6, residual_power=3e0)
    assert meter.linear(3e6 * 1.5).near_evidence_db < 6  # the estimate added to the echo: AEC3 judges
    for _ in range(28):  # a voice as loud as the echo that AEC3's output does not show (the first is above)
        meter.frame(raw_power=3e6, residual_power=3e0)
        assert meter.linear(1.5e6).near_evidence_db > 6 and not meter.linear_lost
    meter.frame(raw_power=3e6, residual_power=3e0)
    meter.linear(1.5e6)
    assert meter.linear_lost  # 300 ms and AEC3 never showed it: the filter lost the echo
    meter.linear_moved()
    assert not meter.linear_converged and not meter.linear_lost


def test_a_copy_of_the_far_end_the_linear_filter_took_little_off_is_an_echo_it_lost() -> None:
    """Seen on the rig: a filter that lost the echo took 0.2 to 3 dB off a microphone matching the far
    end at 0.92 to 1.0, and the reply cut itself. A voice under the echo matches it that well too,
    but a filter that cancels takes the echo off it; and where a voice begins, the match (over the
    last 80 ms) is still the echo's for a frame or two."""
    meter = EchoMeter()
    for _ in range(round(LEARN_S * 1000 / MIC_FRAME_MS) + 120):
        meter.far_frame(3e7)
        meter.frame(raw_power=3e6, residual_power=3e0)
        meter.linear(3e2)
    meter.frame(raw_power=3e6, residual_power=3e0)
    meter.linear(3e6 / 10)  # a voice 10 dB under the echo: the filter took the echo, 10 dB, off
    assert meter.matched(0.97).near_evidence_db > 6 and not meter.linear_lost
    # 1 dB off the same microphone: AEC3 judges. The filter lost the echo, or a voice began over it
    # (the match is over 80 ms): 50 ms of such frames tell.
    for frame in range(LINEAR_LOST_FRAMES):
        meter.frame(raw_power=3e6, residual_power=3e0)
        meter.linear(3e6 / 1.3)
        assert meter.matched(0.97).near_evidence_db < 6
        assert meter.linear_lost == (frame == LINEAR_LOST_FRAMES - 1)
    meter.linear_moved()
    meter.frame(raw_power=3e6, residual_power=3e0)
    meter.linear(3e6 / 1.3)  # a voice over the echo the filter does not judge until it cancels again
    assert meter.matched(0.5).near_evidence_db < 6
