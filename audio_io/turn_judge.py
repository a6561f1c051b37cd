"""Asking the end-of-turn model without making the audio thread wait for it.

The turn detector `ask`s at a pause (ticket = the frame index it asked at) and reads `answer` on every
later frame; a verdict for a pause that speech has since broken is simply ignored. `ThreadedJudge`
runs the model on a worker thread (the app). `ClockedJudge` runs it at once but hands the verdict
out only when the frame clock has advanced by the time the model took, so tests and benches that feed
audio faster than real time still see the model's latency on the audio's own clock.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from audio_io.formats import MIC_FRAME_MS

log = logging.getLogger(__name__)

Scorer = Callable[[np.ndarray], float]  # turn audio so far (int16, 16 kHz) -> P(complete)


@dataclass(frozen=True, slots=True)
class Verdict:
    ticket: int  # the frame index of the pause it judges
    completion: float  # the model's probability that the turn is complete
    compute_ms: float


class TurnJudge(Protocol):
    def ask(self, ticket: int, audio: np.ndarray) -> None: ...
    def answer(self, frame_index: int) -> Verdict | None: ...
    def close(self) -> None: ...


class ThreadedJudge:
    """The model on its own thread; one question at a time, a newer one replacing one not started."""

    def __init__(self, make_scorer: Callable[[], Scorer]) -> None:
        self._make_scorer = make_scorer
        self._lock = threading.Condition()
        self._question: tuple[int, np.ndarray] | None = None
        self._verdict: Verdict | None = None
        self._closed = False
        self.failed: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="turn-judge", daemon=True)
        self._thread.start()

    def ask(self, ticket: int, audio: np.ndarray) -> None:
        with self._lock:
            self._question = (ticket, audio)
            self._lock.notify()

    def answer(self, frame_index: int) -> Verdict | None:
        with self._lock:
            verdict, self._verdict = self._verdict, None
        return verdict

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()

    def _run(self) -> None:
        try:
            scorer = self._make_scorer()  # loads the model here, never on the audio thread
        except Exception as error:  # a missing or broken model: the silence ceiling still ends turns
            log.warning("end-of-turn model unavailable: %s", error)
            self.failed = error
            return
        while True:
            with self._lock:
                while self._question is None and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                assert self._question is not None
                (ticket, audio), self._question = self._question, None
            started = time.perf_counter()
            completion = scorer(audio)
            verdict = Verdict(ticket, completion, (time.perf_counter() - started) * 1000)
            with self._lock:
                self._verdict = verdict


class ClockedJudge:
    """The model run at `ask`, its verdict released `latency_ms` later on the frame clock (by default
    the time the call took). Remembers scores of audio it has seen (a bench asks the same pause under
    several settings)."""

    def __init__(self, scorer: Scorer, latency_ms: float | None = None) -> None:
        self._scorer = scorer
        self.latency_ms = latency_ms
        self._pending: tuple[int, Verdict] | None = None
        self._seen: dict[bytes, tuple[float, float]] = {}
        self.compute_ms: list[float] = []

    def ask(self, ticket: int, audio: np.ndarray) -> None:
        key = audio.tobytes()[-64_000:] + len(audio).to_bytes(8, "little")
        if key not in self._seen:
            started = time.perf_counter()
            score = self._scorer(audio)
            self._seen[key] = (score, (time.perf_counter() - started) * 1000)
        score, took_ms = self._seen[key]
        self.compute_ms.append(took_ms)
        delay_ms = took_ms if self.latency_ms is None else self.latency_ms
        ready = ticket + math.ceil(delay_ms / MIC_FRAME_MS)
        self._pending = (ready, Verdict(ticket, score, took_ms))

    def answer(self, frame_index: int) -> Verdict | None:
        if self._pending is None or frame_index < self._pending[0]:
            return None
        verdict, self._pending = self._pending[1], None
        return verdict

    def close(self) -> None:
        self._pending = None
