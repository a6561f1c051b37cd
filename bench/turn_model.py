"""Does the end-of-turn model hear that a sentence is unfinished? `python -m bench.turn_model --json`.

Smart Turn v3.2 scores 22 English sentences spoken whole against the same sentences cut at a word's
end where a speaker would pause (before a noun phrase, after "and" or "to"), each followed by
200 ms and by 500 ms of silence, for two voices: espeak-ng (the tests' and `bench.turns`' speech)
and festival's HMM voice. Each cut comes from the sentence spoken whole with a long pause there, so
its last words keep the melody of a sentence that goes on. Prints, per voice and silence, the ROC
AUC (the chance that a complete sentence scores above a cut one; 0.5 is chance) and the mean scores.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from audio_io.formats import MIC_RATE_HZ
from bench.rig.signals import say

# (the words before the pause, the rest of the sentence)
PAIRS = (
    ("Can you tell me about", "the weather tomorrow?"),
    ("I would like to book a table for", "two at seven."),
    ("What time does the last train leave for", "the city?"),
    ("My sister bought a new car and", "a small boat."),
    ("Could you remind me to call", "my mother this evening?"),
    ("The meeting has been moved to", "Thursday afternoon."),
    ("Please send the report to", "the whole team."),
    ("Where did you put the", "keys to the garage?"),
    ("I think we should order", "pizza for dinner tonight."),
    ("How many people are coming to the", "party on Saturday?"),
    ("We went to the beach and then", "had lunch by the harbor."),
    ("Is it going to rain in", "London this weekend?"),
    ("Turn off the lights in the kitchen and", "the hallway."),
    ("She told me that", "the store closes at nine."),
    ("Do you know the name of", "the restaurant we visited last year?"),
    ("I need to buy milk, eggs, and", "some fresh bread."),
    ("Why is the traffic so bad on", "the highway today?"),
    ("Set an alarm for", "six thirty tomorrow morning."),
    ("The doctor said I should", "rest for a few days."),
    ("Can you play some music by", "the Beatles?"),
    ("Our flight was delayed because of", "the storm."),
    ("What is the best way to get to", "the airport from here?"),
)
CUT_PAUSE_MS = 1500
SILENCES_MS = (200, 500)


def spoken(tts: str, first: str, second: str, pause_ms: int = 0) -> np.ndarray:
    """The sentence from `tts`, with `pause_ms` of silence after `first`."""
    if tts == "festival":
        from bench.rig.festival import festival_say

        return festival_say(first, second, MIC_RATE_HZ, pause_ms)
    if pause_ms:
        return say(f"{first} <break time='{pause_ms}ms'/> {second}", MIC_RATE_HZ, "en-us", ssml=True)
    return say(f"{first} {second}", MIC_RATE_HZ, "en-us")


def cut_at_pause(audio: np.ndarray, pause_ms: int) -> np.ndarray:
    """`audio` up to the start of its longest quiet stretch (the pause put in)."""
    quiet = np.abs(audio) < 1e-3
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    starts, ends = edges[::2], edges[1::2]
    longest = int(np.argmax(ends - starts))
    if ends[longest] - starts[longest] < pause_ms / 2000 * MIC_RATE_HZ:
        raise ValueError(f"no pause of about {pause_ms} ms found")
    return audio[: starts[longest]]


def auc(positive: list[float], negative: list[float]) -> float:
    """The chance that a positive scores above a negative, ties counting half."""
    p, n = np.asarray(positive)[:, None], np.asarray(negative)[None, :]
    return float(np.mean((p > n) + 0.5 * (p == n)))


def run() -> dict[str, Any]:
    from audio_io.smart_turn import SmartTurn

    model = SmartTurn()
    result: dict[str, Any] = {"pairs": len(PAIRS)}
    for tts in ("espeak-ng", "festival"):
        whole = [spoken(tts, a, b) for a, b in PAIRS]
        cut = [cut_at_pause(spoken(tts, a, b, CUT_PAUSE_MS), CUT_PAUSE_MS) for a, b in PAIRS]
        for silence_ms in SILENCES_MS:
            pad = np.zeros(silence_ms * MIC_RATE_HZ // 1000, np.float32)
            complete = [model.completion(np.concatenate([x, pad])) for x in whole]
            unfinished = [model.completion(np.concatenate([x, pad])) for x in cut]
            result[f"{tts}_{silence_ms}ms"] = {
                "auc": round(auc(complete, unfinished), 3),
                "complete_mean": round(float(np.mean(complete)), 3),
                "cut_mean": round(float(np.mean(unfinished)), 3),
            }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default output)")
    parser.parse_args()
    print(json.dumps(run(), indent=2))


if __name__ == "__main__":
    main()
