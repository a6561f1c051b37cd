"""Small helpers for engine tests: test signals, greedy engines, and running `generate()` as the oracle."""

from __future__ import annotations

from typing import Any

import numpy as np

from events import AudioChunk, EngineError, Event, TextDelta, TurnFinished
from model.engine import Engine, EngineSettings
from model.media_input import UserTurn
from model.reference import reference_generate
from model.sampling import SamplingPlan

SYSTEM = "You are a test assistant."


def tone(seconds: float, freq_hz: float = 220.0, rate_hz: int = 16_000, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    rng = np.random.default_rng(int(freq_hz))
    return (level * np.sin(2 * np.pi * freq_hz * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def picture(width: int = 64, height: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def greedy_engine(loaded: Any, **settings: Any) -> Engine:
    plan = SamplingPlan.from_generation_config(loaded.model.generation_config).greedy()
    defaults: dict[str, Any] = {"system_prompt": SYSTEM, "sampling": plan, "max_text_tokens": 12}
    defaults["max_codec_frames"] = 16
    return Engine(loaded.model, loaded.processor, EngineSettings(**{**defaults, **settings}))


def run(engine: Engine, turn: UserTurn, turn_id: int = 1) -> list[Event]:
    events = list(engine.respond(turn, turn_id))
    errors = [e for e in events if isinstance(e, EngineError)]
    assert not errors, errors
    assert isinstance(events[-1], TurnFinished)
    return events


def pcm_of(events: list[Event]) -> np.ndarray:
    chunks = [e.pcm for e in events if isinstance(e, AudioChunk)]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def text_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def generate_oracle(loaded: Any, turn: UserTurn, *, speaker: str, max_text: int, max_frames: int):
    """transformers' own `generate()` on the same prompt, greedy everywhere: (text ids, codes (16, n))."""
    reply = reference_generate(
        loaded.model,
        loaded.processor,
        turn,
        system_prompt=SYSTEM,
        speaker=speaker,
        max_text_tokens=max_text,
        max_codec_frames=max_frames,
    )
    return reply.text_ids, reply.codes
