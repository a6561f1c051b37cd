"""End of turn and backchannels through the real devices (PortAudio on PulseAudio null sinks), with
the end-of-turn model on its own thread as in the app. Boundaries are judged on the recording's own
sample clock (the frame each event came with), never on wall-clock durations."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soxr

from audio_io.barge_in import BargeInConfig, BargeInMonitor
from audio_io.end_of_turn import policy_for
from audio_io.formats import MIC_FRAME_SAMPLES, MIC_RATE_HZ, PLAYBACK_RATE_HZ
from audio_io.smart_turn import SmartTurn
from audio_io.turn_detector import TurnConfig, TurnDetector
from audio_io.turn_judge import ThreadedJudge
from bench.rig.listening import Listening, play_reply
from bench.rig.pulse import MIC_FEED, SINK_RATE_HZ, SPEAKER_MONITOR, Feeder, Recorder, VirtualAudio
from bench.rig.signals import babble, harmonic_voice, pink_noise, rms, say, silence, speech_rms
from events import BargeIn, SpeechEnded
from tests.audio.test_devices import started_player
from tests.audio.test_end_of_turn import smart_turn  # noqa: F401 (fixture)

pytestmark = [pytest.mark.audio, pytest.mark.timeout(180)]


def to_16k(x: np.ndarray) -> np.ndarray:
    return np.asarray(soxr.resample(x, SINK_RATE_HZ, MIC_RATE_HZ), dtype=np.float32)


def span_in(listening: Listening, utterance: np.ndarray) -> tuple[int, int]:
    """Where `utterance` (16 kHz) starts and ends in the recording: the clock every boundary is
    judged on. Its first and last second are found apart, so that a dropout of the devices inside it
    (a 2-core machine under load has them) moves neither end."""
    head, tail = utterance[:MIC_RATE_HZ], utterance[-MIC_RATE_HZ:]
    start, head_quality = listening.locate(head)
    tail_at, tail_quality = listening.locate(tail)
    assert head_quality > 0.75 and tail_quality > 0.75, (head_quality, tail_quality)
    return start, tail_at + len(tail)


def test_turns_end_on_the_models_judgement_through_the_devices(
    devices: VirtualAudio,
    smart_turn: SmartTurn,  # noqa: F811
) -> None:
    """A clean English sentence, then a Spanish one under pink noise at 10 dB SNR: each forms its
    turn(s) holding all its words, the last one ending within the ceiling plus the model's time."""
    gap = silence(2.5, SINK_RATE_HZ)
    first = say("Please book a table for two at eight tonight, thanks.", SINK_RATE_HZ, "en")
    second = say("¿Puedes decirme qué tiempo hará mañana en Madrid?", SINK_RATE_HZ, "es+f4")
    noise = pink_noise(len(second) / SINK_RATE_HZ + 1.0, SINK_RATE_HZ, 1.0, seed=5)
    noise *= speech_rms(second) / rms(noise) / 10 ** (10 / 20)
    half = SINK_RATE_HZ // 2
    noisy = np.concatenate([noise[:half], second + noise[half : half + len(second)], noise[-half:]])
    signal = np.concatenate([first, gap, noisy, gap])
    judge = ThreadedJudge(lambda: smart_turn.completion)
    feeder = Feeder(MIC_FEED)
    try:
        detector = TurnDetector(TurnConfig(end_of_turn=policy_for("balanced")), judge=judge)
        with Listening(detector) as listening:
            feeder.play(signal, wait=True)
            time.sleep(0.5)
            listening.wait_for(SpeechEnded, count=2, timeout_s=10)
            spans = [span_in(listening, to_16k(first)), span_in(listening, to_16k(second))]
            ended = [(i, e) for i, e in listening.events if isinstance(e, SpeechEnded) and e.audio.size]
            first_index = listening.recording()[1][0]
        budget_ms = policy_for("balanced").ceiling_ms + 1000  # the model may take a while on a busy CPU
        for start16, end16 in spans:
            mine = [(i, e) for i, e in ended if (i - first_index) * MIC_FRAME_SAMPLES > start16]
            mine = [(i, e) for i, e in mine if listening.sample_at(e.audio_start_s) < end16]
            assert mine, f"no turn for the utterance at sample {start16}"
            assert listening.sample_at(mine[0][1].audio_start_s) <= start16
            last_index, last = mine[-1]
            assert listening.sample_at(last.audio_start_s) + last.audio.size >= end16
            ended_ms = ((last_index - first_index + 1) * MIC_FRAME_SAMPLES - end16) / MIC_RATE_HZ * 1000
            assert 0 <= ended_ms <= budget_ms
            assert all(e.ended_early for _, e in mine[:-1])  # a split is the model's, never the silence's
    finally:
        feeder.close()
        judge.close()


def test_background_talk_alone_forms_no_turn_through_the_devices(devices: VirtualAudio) -> None:
    feeder = Feeder(MIC_FEED)
    try:
        with Listening(TurnDetector()) as listening:
            feeder.play(babble(15, SINK_RATE_HZ, 0.1, seed=9), wait=True)
            time.sleep(0.5)
            audio, _, _ = listening.recording()
            assert rms(audio.astype(np.float32) / 32768) > 0.03  # it did arrive
            turns = [e for e in listening.of_type(SpeechEnded) if e.audio.size]
            assert turns == []  # (a start may be taken back: SpeechEnded without audio is no turn)
    finally:
        feeder.close()


def test_mm_hm_pauses_the_reply_and_resumes_it_a_sentence_cuts_it(devices: VirtualAudio) -> None:
    player = started_player()
    feeder = Feeder(MIC_FEED)
    monitor = Recorder(SPEAKER_MONITOR, rate_hz=PLAYBACK_RATE_HZ)
    barge_in = BargeInMonitor(player, BargeInConfig(recovery="pause"))
    try:
        with Listening(TurnDetector(), barge_in=barge_in) as listening:
            reply = harmonic_voice(10.0, PLAYBACK_RATE_HZ)
            play_reply(player, 3, reply, PLAYBACK_RATE_HZ)
            time.sleep(1.5)
            feeder.play(say("mm hmm", SINK_RATE_HZ, "en"), wait=True)
            time.sleep(1.2)
            assert listening.of_type(BargeIn) == [] and player.speaking_turn() == 3
            heard = monitor.samples()
            blocks = np.abs(heard[: len(heard) // 240 * 240].reshape(-1, 240)).max(axis=1)
            playing = np.flatnonzero(blocks > 0.05)
            gaps = np.diff(playing)
            assert gaps.max() >= 10, "no pause while the user said mm-hm"  # >= 100 ms of silence
            assert playing[-1] > playing[np.argmax(gaps)] + 20  # and the reply came back after it
            feeder.play(say("No stop, I want to ask something else.", SINK_RATE_HZ, "en"))
            assert len(listening.wait_for(BargeIn, timeout_s=10)) == 1
            assert player.speaking_turn() is None
    finally:
        feeder.close()
        monitor.close()
        player.stop()
