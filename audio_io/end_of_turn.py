"""When a pause ends the user's turn: the one place where "responsiveness" becomes numbers.

At every pause of `pause_ms` the end-of-turn model judges the turn so far; a completion probability of
at least `complete_at` ends the turn ("ended early by the model's judgement") once the silence has
lasted `earliest_ms`, anything less keeps listening until `ceiling_ms` of silence. Without the
model, `silence_only_ms` of silence ends it. Eager ends on weaker evidence and gives up waiting
sooner; patient needs a confident model and waits longer for someone who pauses to think.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Responsiveness = Literal["eager", "balanced", "patient"]
RESPONSIVENESS: tuple[Responsiveness, ...] = ("eager", "balanced", "patient")
DEFAULT_RESPONSIVENESS: Responsiveness = "balanced"


@dataclass(frozen=True, slots=True)
class EndOfTurnPolicy:
    pause_ms: int = 150  # silence before the model is asked
    earliest_ms: int = 150  # silence before its "complete" may end the turn (a quick model is not rushed)
    complete_at: float = 0.7  # the model's completion probability that ends the turn at once
    ceiling_ms: int = 1300  # silence that ends the turn whatever the model said
    silence_only_ms: int = 500  # without the model

    def __post_init__(self) -> None:
        if not 0 < self.pause_ms <= self.earliest_ms <= self.ceiling_ms:
            raise ValueError("need 0 < pause_ms <= earliest_ms <= ceiling_ms")
        if not 0.0 < self.complete_at <= 1.0:
            raise ValueError("complete_at must be in (0, 1]")


# Chosen on bench.turns (espeak-ng speech, where the model is weak): a ceiling under ~1.3 s cuts 1 s
# pauses by silence alone; 0.8 to 0.9 sends half the turns to the ceiling; acting on "complete"
# before 300 ms of silence cut a quarter more utterances at their commas once the model answered in
# 15 ms (a fast CPU). pipecat itself uses 0.5 and a 3 s ceiling.
POLICIES: dict[Responsiveness, EndOfTurnPolicy] = {
    "eager": EndOfTurnPolicy(150, earliest_ms=200, complete_at=0.5, ceiling_ms=900, silence_only_ms=400),
    "balanced": EndOfTurnPolicy(150, earliest_ms=300, complete_at=0.7, ceiling_ms=1300, silence_only_ms=500),
    "patient": EndOfTurnPolicy(200, earliest_ms=400, complete_at=0.9, ceiling_ms=2000, silence_only_ms=900),
}


def policy_for(responsiveness: str) -> EndOfTurnPolicy:
    """The thresholds of a responsiveness setting (a ValueError names the choices)."""
    if responsiveness not in POLICIES:
        raise ValueError(f"responsiveness must be one of {', '.join(RESPONSIVENESS)}, not {responsiveness!r}")
    return POLICIES[responsiveness]  # type: ignore[index]
