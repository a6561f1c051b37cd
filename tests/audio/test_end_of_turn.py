"""Semantic end of turn, fed straight to the detector faster than real time (no sound device).

The end-of-turn model's verdicts reach the detector a fixed 120 ms later on the frame clock
(`ClockedJudge`), so every latency here is on the audio's own clock. Items come from
`bench.rig.turn_set` with seeds 0-99 (the bench uses 1000 and up).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app import config as app_config
from audio_io.end_of_turn import POLICIES, RESPONSIVENESS, EndOfTurnPolicy, policy_for
from audio_io.formats import MIC_FRAME_MS, MIC_FRAME_SAMPLES, MIC_RATE_HZ
from audio_io.model_files import FILES, missing
from audio_io.smart_turn import SmartTurn, log_mel
from audio_io.turn_detector import TurnConfig, TurnDetector
from audio_io.turn_judge import ClockedJudge, ThreadedJudge
from bench.rig.signals import say
from bench.rig.turn_set import Item, make_item, run_detector
from events import SpeechEnded

LATENCY_MS = 120


@pytest.fixture(scope="module")
def smart_turn() -> SmartTurn:
    if missing():
        pytest.fail(f"{', '.join(m.name for m in FILES)} missing: run scripts/setup")
    return SmartTurn()


def detector(judge: object, responsiveness: str = "balanced") -> TurnDetector:
    return TurnDetector(TurnConfig(end_of_turn=policy_for(responsiveness)), judge=judge)  # type: ignore[arg-type]


def spoken_turns(item: Item, judge: object, responsiveness: str = "balanced") -> list[tuple]:
    return [t for t in run_detector(detector(judge, responsiveness), item).turns if t[3] > 0]


def test_features_equal_whisper_feature_extractor() -> None:
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(chunk_length=8)
    for seconds in (3, 11):
        audio = np.concatenate([say("Hello there, how are you?", MIC_RATE_HZ)] * seconds)[
            : seconds * MIC_RATE_HZ
        ]
        window = np.pad(audio[-8 * MIC_RATE_HZ :], (max(0, 8 * MIC_RATE_HZ - len(audio)), 0))
        options: dict[str, Any] = {"padding": "max_length", "max_length": 128_000, "do_normalize": True}
        expected = extractor(
            window, sampling_rate=MIC_RATE_HZ, truncation=True, return_tensors="np", **options
        ).input_features[0]
        assert np.abs(log_mel(audio) - expected).max() < 1e-4


def test_model_tells_a_statement_from_a_trailing_filler(smart_turn: SmartTurn) -> None:
    """The wiring check: the real model over our front end (a broken front end scores noise)."""
    pause = np.zeros(int(0.2 * MIC_RATE_HZ), np.float32)
    done = smart_turn.completion(
        np.concatenate([say("Please book a table for two at eight.", MIC_RATE_HZ), pause])
    )
    filler = smart_turn.completion(
        np.concatenate([say("I was thinking that maybe we could um", MIC_RATE_HZ), pause])
    )
    assert 0.0 <= filler < 0.5 < done <= 1.0


def test_threaded_judge_answers_later_on_its_own_thread(smart_turn: SmartTurn) -> None:
    judge = ThreadedJudge(lambda: smart_turn.completion)
    try:
        audio = (say("What time is it?", MIC_RATE_HZ) * 32767).astype(np.int16)
        judge.ask(7, audio)
        assert judge.answer(8) is None  # the asking thread is back before the model has run
        verdict = None
        for _ in range(3000):
            verdict = verdict or judge.answer(9)
            if verdict is not None:
                break
            import time

            time.sleep(0.01)
        assert verdict is not None and verdict.ticket == 7 and 0.0 <= verdict.completion <= 1.0
    finally:
        judge.close()


def scripted(*completions: float) -> ClockedJudge:
    """A judge whose model says `completions` in turn (the last one from then on)."""
    said = list(completions)

    def score(audio: np.ndarray) -> float:
        return said.pop(0) if len(said) > 1 else said[0]

    return ClockedJudge(score, latency_ms=LATENCY_MS)


@pytest.fixture(scope="module")
def statement() -> Item:
    return make_item("complete", "clean", np.random.default_rng(3))


def last_voiced_frame(item: Item) -> int:
    return item.speech_end // MIC_FRAME_SAMPLES


@pytest.mark.parametrize("responsiveness", RESPONSIVENESS)
def test_complete_ends_at_the_pause_incomplete_at_the_ceiling(statement: Item, responsiveness: str) -> None:
    policy = POLICIES[responsiveness]  # type: ignore[index]
    (early,) = spoken_turns(statement, scripted(1.0), responsiveness)
    (late,) = spoken_turns(statement, scripted(0.0), responsiveness)
    end = last_voiced_frame(statement)
    assert early[4] and not late[4]
    early_ms, late_ms = (early[1] - end) * MIC_FRAME_MS, (late[1] - end) * MIC_FRAME_MS
    soonest_ms = max(policy.pause_ms + LATENCY_MS, policy.earliest_ms)
    assert soonest_ms - 150 <= early_ms <= soonest_ms + 150
    assert policy.ceiling_ms - 150 <= late_ms <= policy.ceiling_ms + 150  # (an unvoiced end: -)


def test_a_verdict_on_a_pause_that_speech_broke_is_ignored() -> None:
    """Complete at the inner pause, but the speech goes on before the verdict arrives: one turn."""
    rng = np.random.default_rng(11)
    item = make_item("pause", "clean", rng)
    while item.pause_ms != 400:
        item = make_item("pause", "clean", rng)
    slow = ClockedJudge(lambda audio: 1.0, latency_ms=600)
    turns = [t for t in run_detector(detector(slow), item).turns if t[3]]
    assert len(turns) == 1 and (turns[0][1] + 1) * MIC_FRAME_SAMPLES >= item.speech_end


def test_without_a_model_silence_alone_ends_turns(statement: Item) -> None:
    config = TurnConfig(end_of_turn=EndOfTurnPolicy(silence_only_ms=500))
    turns = [t for t in run_detector(TurnDetector(config), statement).turns if t[3]]
    assert len(turns) == 1 and not turns[0][4]
    # from the true end of the sound: an unvoiced ending may be heard as silence already
    assert 500 - 150 <= (turns[0][1] - last_voiced_frame(statement)) * MIC_FRAME_MS <= 500 + 200


def test_responsiveness_is_one_ordered_setting() -> None:
    eager, balanced, patient = (POLICIES[r] for r in RESPONSIVENESS)
    assert eager.complete_at < balanced.complete_at < patient.complete_at
    assert eager.ceiling_ms < balanced.ceiling_ms < patient.ceiling_ms
    assert app_config.AudioSettings().responsiveness == "balanced"
    assert app_config.CHOICES[("audio", "responsiveness")] == RESPONSIVENESS
    with pytest.raises(ValueError, match="eager, balanced, patient"):
        policy_for("quick")


def test_ended_early_is_on_the_event() -> None:
    fields = SpeechEnded.__dataclass_fields__
    assert "ended_early" in fields and "completion" in fields


def test_the_app_chain_maps_its_settings_to_the_detector_and_the_monitor() -> None:
    from dataclasses import replace

    from audio_io.chain import MeteredPlayer, MicrophoneChain

    chain = MicrophoneChain(
        MeteredPlayer(object()), responsiveness="eager", backchannels="duck", end_of_turn_silence_ms=700
    )
    assert chain._turns().config.end_of_turn == replace(policy_for("eager"), silence_only_ms=700)
    assert chain._barge_in_config().recovery == "duck"
    assert MicrophoneChain(MeteredPlayer(object()))._barge_in_config().recovery == "pause"


def test_a_pause_sends_the_turn_so_far_and_a_turn_ending_there_is_exactly_that() -> None:
    """What a speculative reply is computed from (everything sent at `SpeechPaused`) is the turn,
    when it ends at that pause; after a pause the user goes on from, nothing is lost either."""
    from bench.rig.turn_set import frames_of
    from events import SpeechPaused, SpeechProgress

    turn = detector(scripted(0.1))  # "not complete": the 600 ms pause is inside the turn
    quiet = np.zeros(MIC_RATE_HZ, np.float32)
    first, second = say("I would like to book a table", MIC_RATE_HZ), say("for two people", MIC_RATE_HZ)
    signal = np.concatenate([quiet, first, quiet[: MIC_RATE_HZ * 6 // 10], second, quiet, quiet])
    events = [event for frame in frames_of(signal) for event in turn.process(frame)]
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("SpeechStarted") == kinds.count("SpeechEnded") == 1, kinds
    assert kinds.count("SpeechPaused") == 2  # the pause inside the sentence, and the one that ends it
    last_pause = max(i for i, e in enumerate(events) if isinstance(e, SpeechPaused))
    assert not any(isinstance(e, SpeechProgress) for e in events[last_pause:])  # held back meanwhile
    streamed = np.concatenate([e.audio for e in events if isinstance(e, SpeechProgress)])
    ended = events[-1]
    assert isinstance(ended, SpeechEnded) and np.array_equal(ended.audio, streamed)
    assert ended.audio.size > first.size + second.size + 0.6 * MIC_RATE_HZ
