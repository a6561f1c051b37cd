"""End of turn on a labelled set: the silence-only detector against the model-judged one, same run.

    python -m bench.turns --json [--count 220] [--seed 1000] [--all-settings] [--model-latency-ms MS]
                                 [--tts espeak-ng|festival]

The set (`bench.rig.turn_set`, seeds other than the tests') is fed to each detector faster than real
time; the end-of-turn model's verdicts reach the detector as many frames later as the model took
on this machine (`ClockedJudge`), so latencies are on the audio's own clock and include it. Prints
end_of_turn_ms_median / _p90 (true end of speech -> the frame that emitted SpeechEnded),
false_cutoff_rate (a turn ended inside an utterance), missed_turn_rate (no turn for an utterance),
words_lost_rate (a turn whose audio misses the utterance's first or last sound), extra_turn_rate,
babble_false_turns_per_min (turns formed by background talk or noise alone) and the model's call time.
`--model-latency-ms` puts the verdicts that many ms after the ask instead of the measured time (what
a faster CPU would give: pipecat quotes ~12 ms a call). `--tts festival` builds the turns from
festival's English HMM voice, whose melody the model hears, instead of espeak-ng's four languages.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from typing import Any

import numpy as np

from audio_io.formats import MIC_FRAME_MS, MIC_FRAME_SAMPLES, MIC_RATE_HZ
from bench.rig.turn_set import Item, Outcome, make_set, run_detector


def silence_only_detector() -> Any:
    """The detector as it was: webrtcvad + pitch check, 500 ms of silence, 300 ms of pre-roll and
    100 ms kept after speech."""
    from audio_io.end_of_turn import policy_for
    from audio_io.turn_detector import TurnConfig, TurnDetector
    from audio_io.vad import VadConfig

    policy = replace(policy_for("balanced"), silence_only_ms=500)
    config = TurnConfig(vad=VadConfig(check="pitch"), end_of_turn=policy, pre_roll_ms=300, trailing_ms=100)
    return TurnDetector(config)


def judged_detector(judge: Any, responsiveness: str = "balanced") -> Any:
    from audio_io.end_of_turn import policy_for
    from audio_io.turn_detector import TurnConfig, TurnDetector

    return TurnDetector(TurnConfig(end_of_turn=policy_for(responsiveness)), judge=judge)


def score(items: list[Item], outcomes: list[Outcome]) -> dict[str, Any]:
    """The figures of one detector over the set."""
    latencies, cut, missed, lost, extra = [], [], [], [], []
    background_turns, background_s = 0, 0.0
    early = 0
    for item, outcome in zip(items, outcomes, strict=True):
        turns = [t for t in outcome.turns if t[3] > 0]
        if item.kind == "background":
            background_turns += len(turns)
            background_s += len(item.audio) / MIC_RATE_HZ
            continue
        start, end = item.speech_start, item.speech_end
        overlapping = [
            t for t in turns if t[0] * MIC_FRAME_SAMPLES < end and (t[1] + 1) * MIC_FRAME_SAMPLES > start
        ]
        cut.append(any((t[1] + 1) * MIC_FRAME_SAMPLES < end for t in overlapping))
        missed.append(not overlapping)
        extra.append(len(turns) > 1)
        final = [t for t in overlapping if (t[1] + 1) * MIC_FRAME_SAMPLES >= end]
        if final:
            t = final[0]
            latencies.append(((t[1] + 1) * MIC_FRAME_SAMPLES - end) / MIC_RATE_HZ * 1000)
            early += t[4]
            first = min(o[2] for o in overlapping)
            lost.append(first > start or t[2] + t[3] < end)
        elif overlapping:
            lost.append(True)
    pauses = [c for c, i in zip(cut, [i for i in items if i.kind != "background"], strict=True) if i.pause_ms]
    return {
        "end_of_turn_ms_median": round(float(np.median(latencies)), 1) if latencies else None,
        "end_of_turn_ms_p90": round(float(np.percentile(latencies, 90)), 1) if latencies else None,
        "false_cutoff_rate": round(float(np.mean(cut)), 3),
        "false_cutoff_rate_inner_pauses": round(float(np.mean(pauses)), 3) if pauses else None,
        "missed_turn_rate": round(float(np.mean(missed)), 3),
        "words_lost_rate": round(float(np.mean(lost)), 3) if lost else None,
        "extra_turn_rate": round(float(np.mean(extra)), 3),
        "babble_false_turns_per_min": round(background_turns / max(background_s, 1e-9) * 60, 2),
        "ended_early_share": round(early / max(len(latencies), 1), 3),
    }


def run(
    count: int, seed: int, all_settings: bool, latency_ms: float | None = None, tts: str = "espeak-ng"
) -> dict[str, Any]:
    from audio_io.smart_turn import SmartTurn
    from audio_io.turn_judge import ClockedJudge

    started = time.perf_counter()
    items = make_set(seed, count, tts=tts)
    built_s = time.perf_counter() - started
    result: dict[str, Any] = {
        "turns": sum(i.kind != "background" for i in items),
        "background_s": round(sum(len(i.audio) for i in items if i.kind == "background") / MIC_RATE_HZ, 1),
        "seed": seed,
        "tts": tts,
        "set_build_s": round(built_s, 1),
    }
    result["silence_only"] = score(items, [run_detector(silence_only_detector(), i) for i in items])
    judge = ClockedJudge(SmartTurn().completion, latency_ms)
    result["model_latency_ms"] = "measured" if latency_ms is None else latency_ms
    for setting in ("eager", "balanced", "patient") if all_settings else ("balanced",):
        outcomes = [run_detector(judged_detector(judge, setting), i) for i in items]
        result["model_" + setting] = score(items, outcomes)
    result["model_call_ms_median"] = round(float(np.median(judge.compute_ms)), 1)
    result["model_call_ms_p90"] = round(float(np.percentile(judge.compute_ms, 90)), 1)
    result["frame_ms"] = MIC_FRAME_MS
    result["run_s"] = round(time.perf_counter() - started, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--count", type=int, default=220, help="items in the set (about 90%% are turns)")
    parser.add_argument("--seed", type=int, default=1000, help="the set's seed (the tests use 0 to 99)")
    parser.add_argument("--all-settings", action="store_true", help="eager and patient too")
    parser.add_argument("--model-latency-ms", type=float, help="model verdicts this late (default: measured)")
    parser.add_argument("--tts", choices=("espeak-ng", "festival"), default="espeak-ng", help="the speech")
    args = parser.parse_args()
    result = run(args.count, args.seed, args.all_settings, args.model_latency_ms, args.tts)
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
