"""What the engine process and the Realtime protocol add to the first audio of a turn: the same
typed turn with the same seed, in this process and through `omnidesk serve` (part of bench.app)."""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from bench.app import pump


def protocol_overhead(demo_dir: Path, pairs: int) -> dict[str, Any]:
    """First audio of one typed turn, same seed: in this process, and through the engine process."""
    from PySide6.QtCore import QCoreApplication

    from app.engine_client import LoadRequest
    from app.realtime_client import RealtimeEngine
    from events import TextDelta
    from model.engine import Engine, EngineSettings
    from model.loading import load_model
    from model.media_input import UserTurn

    options: dict[str, Any] = {"seed": 7, "max_text_tokens": 8, "max_codec_frames": 8}
    os.environ["OMNIDESK_ENGINE_NICENESS"] = (
        "0"  # the same CPU share as this process: only the protocol differs
    )
    loaded = load_model(str(demo_dir), device="cpu")
    remote = RealtimeEngine(None)
    first: dict[int, float] = {}
    remote.signals.reported.connect(
        lambda event: (
            first.setdefault(event.turn_id, time.perf_counter()) if isinstance(event, TextDelta) else 0
        )
    )
    remote.feeder.speech = _FirstWrite(first)
    remote.load(LoadRequest(str(demo_dir), system_prompt="You are a test assistant.", engine_options=options))
    if not pump(lambda: remote.announced, 240):
        return {"protocol_overhead_ms": None}
    here: list[float] = []
    there: list[float] = []
    for turn_id in range(1, pairs + 1):
        engine = Engine(
            loaded.model,
            loaded.processor,
            EngineSettings(system_prompt="You are a test assistant.", **options),
        )
        worker = threading.Thread(target=_first_audio_in_process, args=(engine, turn_id, here))
        worker.start()  # on a worker thread, as the engine always runs (the main thread runs torch slower)
        worker.join()
        remote.new_conversation()
        pump(lambda: False, 0.5)
        first.pop(-turn_id, None)
        started = time.perf_counter()
        remote.respond(turn_id, UserTurn(text="hello"))
        if pump(lambda: -turn_id in first, 60):  # noqa: B023
            there.append(first[-turn_id] - started)
        QCoreApplication.processEvents()
    remote.stop()
    if not here or not there:
        return {"protocol_overhead_ms": None}
    return {
        "first_audio_ms_in_process": round(statistics.median(here) * 1000, 1),
        "first_audio_ms_through_server": round(statistics.median(there) * 1000, 1),
        "protocol_overhead_ms": round((statistics.median(there) - statistics.median(here)) * 1000, 1),
    }


def _first_audio_in_process(engine: Any, turn_id: int, out: list[float]) -> None:
    from model.media_input import UserTurn

    started = time.perf_counter()
    for event in engine.respond(UserTurn(text="hello"), turn_id):
        if type(event).__name__ == "AudioChunk":
            out.append(time.perf_counter() - started)
            return


class _FirstWrite:
    """A speech output that only notes when each turn's first audio arrives (as turn id -n)."""

    def __init__(self, first: dict[int, float]) -> None:
        self.first = first

    def start_turn(self, turn_id: int) -> None:
        pass

    def write(self, chunk: Any) -> bool:
        self.first.setdefault(-chunk.turn_id, time.perf_counter())
        return True

    def finish_turn(self, turn_id: int) -> None:
        pass
