"""End of turn on espeak-ng speech in four languages, several voices and rates, clean and under pink
noise and background talk at 20 and 10 dB SNR, fed straight to the real detector (Silero VAD, the
real Smart Turn model; its verdicts 120 ms later on the frame clock). Seeds 0-99; bench.turns uses
others."""

from __future__ import annotations

import numpy as np
import pytest

from audio_io.end_of_turn import policy_for
from audio_io.formats import MIC_FRAME_SAMPLES, MIC_RATE_HZ
from audio_io.smart_turn import SmartTurn
from audio_io.turn_detector import TurnConfig, TurnDetector
from audio_io.turn_judge import ClockedJudge
from bench.rig.signals import babble, pink_noise, rms, speech_rms
from bench.rig.turn_set import CONDITIONS, SENTENCES, Item, make_item, run_detector
from tests.audio.test_end_of_turn import LATENCY_MS, scripted, smart_turn  # noqa: F401 (fixture)

LANGUAGES = tuple(SENTENCES)
LATE_MARGIN_MS = 400  # after the ceiling: Silero's hold-over and a noisy tail


@pytest.fixture(scope="module")
def judge(smart_turn: SmartTurn) -> ClockedJudge:  # noqa: F811
    return ClockedJudge(smart_turn.completion, latency_ms=LATENCY_MS)


def turns_of(item: Item, judge: ClockedJudge) -> list[tuple]:
    detector = TurnDetector(TurnConfig(end_of_turn=policy_for("balanced")), judge=judge)
    return [t for t in run_detector(detector, item).turns if t[3] > 0]


def covers(turn: tuple, start: int, end: int) -> bool:
    """The turn's audio holds the utterance's first and last sounds."""
    return turn[2] <= start and turn[2] + turn[3] >= end


def ended_ms(turn: tuple, end: int) -> float:
    return ((turn[1] + 1) * MIC_FRAME_SAMPLES - end) / MIC_RATE_HZ * 1000


def check_utterance(turns: list[tuple], start: int, end: int, text: str) -> tuple:
    """The turns an utterance formed: its first sound in the first, its last in the last, and any
    split before its end made by the model's judgement (which bench.turns counts), never by silence.
    Returns the last turn."""
    mine = [t for t in turns if t[0] * MIC_FRAME_SAMPLES < end and (t[1] + 1) * MIC_FRAME_SAMPLES > start]
    assert mine, f"no turn for {text}"
    assert mine[0][2] <= start and mine[-1][2] + mine[-1][3] >= end, (text, mine)
    assert all(t[4] for t in mine[:-1]), f"silence split {text}: {mine}"
    return mine[-1]


@pytest.mark.parametrize("condition", CONDITIONS)
def test_complete_utterances_end_within_the_budget_and_keep_their_words(
    condition: str, judge: ClockedJudge
) -> None:
    rng = np.random.default_rng(CONDITIONS.index(condition))
    budget_ms = policy_for("balanced").ceiling_ms + LATENCY_MS + LATE_MARGIN_MS
    for language in LANGUAGES:
        item = make_item("complete", condition, rng, language)
        turns = turns_of(item, judge)
        last = check_utterance(turns, item.speech_start, item.speech_end, item.text)
        assert len(turns) <= 2 and 0 <= ended_ms(last, item.speech_end) <= budget_ms, (item.text, turns)


@pytest.mark.parametrize("pause_ms", [400, 700, 1000])
def test_inner_pauses_and_fillers_are_not_cut_while_the_model_hears_an_unfinished_sentence(
    pause_ms: int, judge: ClockedJudge
) -> None:
    """With the model saying "incomplete", a pause of up to a second inside a sentence, or after
    "and um", never ends the turn; with the real model only its judgement can, never the silence."""
    rng = np.random.default_rng(20 + pause_ms)
    unfinished = scripted(0.0)
    conditions = ("clean", "babble10", "pink20", "babble20")
    cases = [("pause", c, language) for c, language in zip(conditions, LANGUAGES, strict=True)]
    if pause_ms > 400:
        cases += [("filler", "pink10" if pause_ms == 700 else "clean", LANGUAGES[pause_ms // 300 - 2])]
    for kind, condition, language in cases:
        if True:
            item = make_item(kind, condition, rng, language, pause_ms)
            turns = turns_of(item, unfinished)
            assert len(turns) == 1 and covers(turns[0], item.speech_start, item.speech_end), (
                item.text,
                turns,
            )
            check_utterance(turns_of(item, judge), item.speech_start, item.speech_end, item.text)


@pytest.mark.parametrize("kind", ["babble", "babble_loud", "babble_switched_on", "pink10"])
def test_background_alone_forms_no_turn(kind: str, judge: ClockedJudge) -> None:
    """Also background talk that starts after a silence (a television switched on), which passes for
    the user's voice until the background estimate has caught up with it."""
    seconds = 30.0
    if kind == "pink10":
        noise = pink_noise(seconds, MIC_RATE_HZ, 0.05, seed=41)
    else:
        noise = babble(seconds, MIC_RATE_HZ, 0.15 if kind == "babble_loud" else 0.05, seed=42)
    if kind == "babble_switched_on":
        noise = np.concatenate([np.zeros(2 * MIC_RATE_HZ, np.float32), noise[: 15 * MIC_RATE_HZ]])
    assert turns_of(Item("background", kind, "", "", noise), judge) == []


@pytest.mark.parametrize("snr_db", [20, 10])
def test_speech_over_babble_forms_one_turn_per_utterance(snr_db: int, judge: ClockedJudge) -> None:
    rng = np.random.default_rng(60 + snr_db)
    gap = np.zeros(int(2.5 * MIC_RATE_HZ), np.float32)
    parts, bounds, at = [gap], [], len(gap)
    for language in ("en", "de", "es"):
        spoken = make_item("complete", "clean", rng, language)
        utterance = spoken.audio[spoken.speech_start : spoken.speech_end]
        parts += [utterance, gap]
        bounds.append((at, at + len(utterance)))
        at += len(utterance) + len(gap)
    voices = np.concatenate(parts)
    noise = babble(len(voices) / MIC_RATE_HZ + 0.1, MIC_RATE_HZ, 0.1, seed=61)[: len(voices)]
    loudness = np.mean([speech_rms(voices[a:b]) for a, b in bounds])
    mixed = voices + noise * (loudness / rms(noise) / 10 ** (snr_db / 20))
    turns = turns_of(Item("complete", f"babble{snr_db}", "", "", mixed.astype(np.float32)), judge)
    assert len(turns) >= len(bounds), turns
    for start, end in bounds:
        assert ended_ms(check_utterance(turns, start, end, f"utterance at {start}"), end) >= 0
    assert all(any(t[0] * MIC_FRAME_SAMPLES < e and (t[1] + 1) * MIC_FRAME_SAMPLES > s for s, e in bounds)
               for t in turns), f"a turn of babble alone: {turns}"  # fmt: skip
