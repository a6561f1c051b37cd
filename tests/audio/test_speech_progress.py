"""The turn's audio while it is spoken: SpeechProgress pieces, pre-roll first, of which the final
SpeechEnded audio is a prefix (synthetic frames; no sound device)."""

from __future__ import annotations

import numpy as np

from audio_io.formats import MIC_RATE_HZ
from audio_io.turn_detector import TurnConfig, TurnDetector
from bench.rig.signals import silence, speech
from events import SpeechEnded, SpeechProgress, SpeechStarted
from tests.audio.test_units import frames_of


def speech_wav() -> np.ndarray:
    return speech("Hello there, how are you today? I would like to hear the news.", MIC_RATE_HZ)


def run_detector(detector: TurnDetector, signal: np.ndarray) -> list[object]:
    return [event for frame in frames_of(signal) for event in detector.process(frame)]


def test_progress_pieces_lead_to_the_final_turn_audio() -> None:
    speech = speech_wav()
    events = run_detector(
        TurnDetector(TurnConfig(progress_ms=300)),
        np.concatenate([silence(1, MIC_RATE_HZ), speech, silence(1.5, MIC_RATE_HZ)]),
    )
    kinds = [type(e) for e in events]
    assert kinds[0] is SpeechStarted and kinds[-1] is SpeechEnded
    assert kinds.count(SpeechProgress) >= 3
    streamed = np.concatenate([e.audio for e in events if isinstance(e, SpeechProgress)])
    final = events[-1]
    assert isinstance(final, SpeechEnded) and final.audio.size > 0
    # What was streamed starts exactly where the turn's audio starts (pre-roll included).
    n = min(streamed.size, final.audio.size)
    assert n >= final.audio.size - 3 * 160 * 30 and np.array_equal(streamed[:n], final.audio[:n])
    assert final.audio_start_s < final.start_s


def test_no_progress_outside_a_turn_or_when_switched_off() -> None:
    assert not any(
        isinstance(e, SpeechProgress) for e in run_detector(TurnDetector(), silence(2, MIC_RATE_HZ))
    )
    events = run_detector(
        TurnDetector(TurnConfig(progress_ms=0)), np.concatenate([speech_wav(), silence(1.5, MIC_RATE_HZ)])
    )
    assert not any(isinstance(e, SpeechProgress) for e in events)
