"""How long full garbage collections hold the GIL (and so every audio callback) while installed."""

from __future__ import annotations

import gc
import time
from typing import Any


class FullCollections:
    """Counts generation-2 collections and keeps the longest, in ms; use as a context manager."""

    def __init__(self) -> None:
        self.count = 0
        self.max_ms = 0.0
        self._started = 0.0

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self._on_collection)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.count += 1
        self.max_ms = max(self.max_ms, (time.perf_counter() - self._started) * 1000)


def full_collection_ms() -> float:
    """One full collection now, timed: what a collection of this heap costs unfrozen."""
    started = time.perf_counter()
    gc.collect()
    return (time.perf_counter() - started) * 1000
