"""Small helpers for engine tests: test signals, greedy engines, and running `generate()` as the oracle."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from events import AudioChunk, EngineError, Event, TextDelta, TurnFinished
from model.engine import Engine, EngineSettings
from model.media_input import UserTurn
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


def generate_oracle(
    loaded: Any, turn: UserTurn, *, speaker: str, max_text: int, max_frames: int, speak: bool = True
):
    """transformers' own `generate()` on the same prompt, greedy everywhere: (text ids, codes (16, n))."""
    model, processor = loaded.model, loaded.processor
    content: list[dict[str, Any]] = []
    if turn.audio is not None:
        content.append({"type": "audio", "audio": "turn.wav"})
    content += [{"type": "image", "image": f"image{i}.png"} for i in range(len(turn.images))]
    if turn.text:
        content.append({"type": "text", "text": turn.text})
    conversation = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]
    text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    from PIL import Image

    inputs = processor(
        text=[text],
        audio=[turn.audio] if turn.audio is not None else None,
        images=[Image.fromarray(i) for i in turn.images] or None,
        return_tensors="pt",
    )
    captured: list[torch.Tensor] = []
    original = model.code2wav.chunked_decode

    def record(codes: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        captured.append(codes.clone())
        return original(codes, *args, **kwargs)

    # The image + audio bug (DESIGN.md): `generate()` reads `audio_config` from the Talker's config.
    had_audio_config = hasattr(model.talker.config, "audio_config") if speak else True
    if not had_audio_config:
        model.talker.config.audio_config = model.config.thinker_config.audio_config
    model.code2wav.chunked_decode = record
    try:
        out = model.generate(
            **inputs,
            speaker=speaker,
            return_audio=speak,
            thinker_max_new_tokens=max_text,
            thinker_do_sample=False,
            talker_do_sample=False,
            talker_max_new_tokens=max_frames + 1,
        )
    finally:
        del model.code2wav.chunked_decode
        if not had_audio_config:
            del model.talker.config.audio_config
    sequences = out[0] if isinstance(out, tuple) else (out.sequences if hasattr(out, "sequences") else out)
    ids = sequences[0, inputs["input_ids"].shape[1] :].tolist()
    codes = captured[0][0] if captured else None
    return ids, codes
