"""audio_io parts that need no sound device: ring buffer, voice activity, turn detection on files."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soxr

from audio_io.audio_loop import AudioLoop
from audio_io.barge_in import BargeInConfig, BargeInMonitor
from audio_io.echo_canceller import EchoCanceller, EchoCancellerConfig
from audio_io.formats import MIC_FRAME_SAMPLES, MIC_RATE_HZ, PLAYBACK_RATE_HZ
from audio_io.microphone import MicFrame, Microphone, MicrophoneConfig
from audio_io.ring_buffer import SampleRing
from audio_io.turn_detector import TurnConfig, TurnDetector
from audio_io.vad import VoiceActivity
from bench.rig.signals import pink_noise, silence, speech, white_noise
from events import Problem, SpeechEnded, SpeechProgress, SpeechStarted
from tests.audio.reply_player import RecordingPlayer


def frames_of(signal: np.ndarray, t0: float = 100.0) -> list[MicFrame]:
    pcm = np.clip(signal * 32768, -32768, 32767).astype(np.int16)
    n = len(pcm) // MIC_FRAME_SAMPLES
    return [
        MicFrame(pcm[i * MIC_FRAME_SAMPLES : (i + 1) * MIC_FRAME_SAMPLES], i, t0 + i * 0.01) for i in range(n)
    ]


def run(detector: TurnDetector, frames: list[MicFrame]) -> list[object]:
    return [e for f in frames for e in detector.process(f)]


def test_ring_buffer_wraps_and_never_overwrites_unread() -> None:
    ring = SampleRing(8)
    assert ring.write(np.arange(6, dtype=np.float32)) == 6
    out = np.zeros(4, np.float32)
    assert ring.read_into(out) == 4 and out.tolist() == [0, 1, 2, 3]
    assert ring.write(np.arange(10, 20, dtype=np.float32)) == 6  # only 6 free
    out = np.zeros(10, np.float32)
    assert ring.read_into(out) == 8
    assert out[:8].tolist() == [4, 5, 10, 11, 12, 13, 14, 15]
    ring.skip_to(100)
    assert ring.read_pos == ring.write_pos == 12


def test_noise_is_not_speech_but_speech_is() -> None:
    for noise in (white_noise(3, MIC_RATE_HZ, 0.1), pink_noise(3, MIC_RATE_HZ, 0.1)):
        vad = VoiceActivity()
        assert np.mean([vad.is_speech(f.pcm) for f in frames_of(noise)]) < 0.02  # a turn needs 12 in a row
    vad = VoiceActivity()
    voiced = [vad.is_speech(f.pcm) for f in frames_of(speech("Hello there, how are you today?", MIC_RATE_HZ))]
    assert np.mean(voiced) > 0.3


@pytest.fixture(scope="module")
def sentences() -> list[np.ndarray]:
    texts = ["Hello there how are you today", "What is the weather going to be", "Thank you very much"]
    return [speech(t, MIC_RATE_HZ) for t in texts]


def test_hands_free_cuts_joined_sentences_at_their_boundaries(sentences: list[np.ndarray]) -> None:
    gaps = [0.6, 0.9, 1.2, 1.0]
    parts, bounds, at = [silence(gaps[0], MIC_RATE_HZ)], [], int(gaps[0] * MIC_RATE_HZ)
    for sentence, gap in zip(sentences, gaps[1:], strict=True):
        parts += [sentence, silence(gap, MIC_RATE_HZ)]
        bounds.append((at, at + len(sentence)))
        at += len(sentence) + int(gap * MIC_RATE_HZ)
    events = run(TurnDetector(), frames_of(np.concatenate(parts)))
    started = [e for e in events if isinstance(e, SpeechStarted)]
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(started) == len(ended) == 3
    for (start, end), s, e in zip(bounds, started, ended, strict=True):
        assert abs((s.time_s - 100.0) * MIC_RATE_HZ - start) < 0.1 * MIC_RATE_HZ
        assert abs((e.end_s - 100.0) * MIC_RATE_HZ - end) < 0.1 * MIC_RATE_HZ
        assert len(e.audio) >= end - start + 0.25 * MIC_RATE_HZ  # pre-roll included


def test_short_gaps_do_not_split_a_turn(sentences: list[np.ndarray]) -> None:
    signal = np.concatenate(
        [silence(0.5, MIC_RATE_HZ), sentences[0], silence(0.25, MIC_RATE_HZ), sentences[1]]
    )
    events = run(TurnDetector(), frames_of(np.concatenate([signal, silence(1, MIC_RATE_HZ)])))
    assert len([e for e in events if isinstance(e, SpeechEnded)]) == 1


def test_max_turn_length_ends_a_turn(sentences: list[np.ndarray]) -> None:
    signal = np.concatenate([silence(0.3, MIC_RATE_HZ), *sentences[:2], silence(1, MIC_RATE_HZ)])
    config = TurnConfig(max_turn_ms=1000)
    events = run(TurnDetector(config), frames_of(signal))
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(ended) >= 2
    assert len(ended[0].audio) <= (config.pre_roll_ms + config.max_turn_ms + 100) / 1000 * MIC_RATE_HZ


@pytest.mark.parametrize("make", [white_noise, pink_noise])
def test_noise_forms_no_turn(make: object) -> None:
    noise = make(5, MIC_RATE_HZ, 0.1)  # type: ignore[operator]
    assert run(TurnDetector(), frames_of(noise)) == []


def test_push_to_talk_takes_exactly_the_held_frames(sentences: list[np.ndarray]) -> None:
    signal = np.concatenate([sentences[0], silence(1.0, MIC_RATE_HZ), sentences[1]])
    frames = frames_of(signal)
    detector = TurnDetector(TurnConfig(mode="push_to_talk"))
    detector.press(at_s=100.5)
    detector.release(at_s=102.0)
    events = [e for e in run(detector, frames) if not isinstance(e, SpeechProgress)]
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    ended = events[1]
    assert isinstance(ended, SpeechEnded)
    assert len(ended.audio) == 150 * MIC_FRAME_SAMPLES
    first = frames[50].pcm
    assert np.array_equal(ended.audio[: len(first)], first)


def test_resampled_file_speech_still_detected() -> None:
    s = speech("Good morning to you", 22_050)
    s16 = np.asarray(soxr.resample(s, 22_050, MIC_RATE_HZ), dtype=np.float32)
    events = run(
        TurnDetector(), frames_of(np.concatenate([silence(0.5, MIC_RATE_HZ), s16, silence(1, MIC_RATE_HZ)]))
    )
    assert sum(isinstance(e, SpeechEnded) and len(e.audio) > 0 for e in events) == 1


@pytest.mark.parametrize("rms", [0.03, 0.1, 0.3])
@pytest.mark.parametrize("make", [white_noise, pink_noise])
def test_noise_during_a_reply_does_not_barge_in(make: object, rms: float) -> None:
    player = RecordingPlayer()
    monitor = BargeInMonitor(player, BargeInConfig())  # the default minimum, the one the app uses
    noise = make(10, MIC_RATE_HZ, rms, seed=7)  # type: ignore[operator]
    assert [e for f in frames_of(noise) for e in monitor.process(f)] == []
    assert player.flushes == 0


def test_speech_during_a_reply_barges_in_after_the_minimum(sentences: list[np.ndarray]) -> None:
    player = RecordingPlayer()
    config = BargeInConfig()
    monitor = BargeInMonitor(player, config)
    onset = int(0.5 * MIC_RATE_HZ)
    frames = frames_of(np.concatenate([silence(0.5, MIC_RATE_HZ), sentences[0]]))
    fired = [f.index for f in frames if monitor.process(f)]
    assert len(fired) == 1 and player.flushes == 1
    detection_ms = (fired[0] + 1) * MIC_FRAME_SAMPLES / MIC_RATE_HZ * 1000 - onset / MIC_RATE_HZ * 1000
    assert config.min_speech_ms <= detection_ms <= config.min_speech_ms + 60


class PlayedFarEnd:
    """A far end as `Player` offers it, filled in advance: the reply was played, the loop lags."""

    def __init__(self, played: np.ndarray, clock_s: float) -> None:
        self.far_end = SampleRing(len(played) + PLAYBACK_RATE_HZ)
        self.far_end.write(played)
        self.far_end_clock_s = clock_s

    @property
    def rate_hz(self) -> int:
        return PLAYBACK_RATE_HZ

    @property
    def latency_s(self) -> float:
        return 0.02


def test_echo_canceller_aligns_by_time_even_when_its_loop_lags() -> None:
    """All of a reply is already in the far end when the first microphone frame is cancelled (the
    audio thread fell behind); the far end must still be fed by time, not skipped to the present."""
    reply = np.concatenate([silence(0.3, PLAYBACK_RATE_HZ), speech("Sure, here is a long answer "
                            "about the weather tomorrow.", PLAYBACK_RATE_HZ)])  # fmt: skip
    clock_s, path_s = 100.0, 0.06
    reply_16k = np.asarray(soxr.resample(reply, PLAYBACK_RATE_HZ, MIC_RATE_HZ), dtype=np.float32)
    mic = np.concatenate([silence(path_s, MIC_RATE_HZ), 0.5 * reply_16k])
    canceller = EchoCanceller(EchoCancellerConfig(), PlayedFarEnd(reply, clock_s))
    frames = frames_of(mic, t0=clock_s)
    cleaned = np.concatenate([canceller.process(f.pcm, f.time_s) for f in frames]).astype(np.float64)
    raw = np.concatenate([f.pcm for f in frames]).astype(np.float64)
    half = len(raw) // 2  # after convergence
    attenuation_db = 10 * np.log10(np.sum(raw[half:] ** 2) / max(np.sum(cleaned[half:] ** 2), 1e-9))
    assert attenuation_db > 20


def test_a_frame_the_echo_canceller_fails_on_is_dropped_and_listening_goes_on() -> None:
    """The native AEC3 instance gone (livekit answered "handle not found" once on the rig, and the
    audio thread died with it): that frame is dropped, the canceller starts afresh, a `Problem` says
    so, and the user's next words are heard."""
    mic = Microphone(MicrophoneConfig())  # never started: the test fills its queue
    events: list[object] = []
    echo = EchoCanceller(EchoCancellerConfig(), PlayedFarEnd(silence(1.0, PLAYBACK_RATE_HZ), 100.0))
    loop = AudioLoop(mic, TurnDetector(), events.append, echo=echo)
    echo._apm._ffi_handle.dispose()
    voice = np.concatenate([silence(0.3, MIC_RATE_HZ), speech("Can you hear me now?", MIC_RATE_HZ)])
    loop.start()
    try:
        for frame in frames_of(np.concatenate([voice, silence(1.5, MIC_RATE_HZ)])):
            mic.frames.put(frame, timeout=5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(isinstance(e, SpeechEnded) for e in events):
            time.sleep(0.01)
    finally:
        loop.stop()
    problems = [e for e in events if isinstance(e, Problem)]
    assert len(problems) == 1 and "echo cancellation started afresh" in problems[0].message, problems
    assert loop.failures == 1 and loop.echo is not None and loop.echo is not echo
    assert [type(e) for e in events if isinstance(e, (SpeechStarted, SpeechEnded))] == [
        SpeechStarted,
        SpeechEnded,
    ]
