"""Bad input is converted or refused with a clear message; a failure inside generation ends that
turn with EngineError and leaves the engine as it was."""

from __future__ import annotations

import numpy as np
import pytest

from events import AudioChunk, EngineError, TurnFinished
from model.media_input import UserTurn
from tests.engine_helpers import greedy_engine, run, tone


def only_error(events) -> str:
    assert len(events) == 1 and isinstance(events[0], EngineError), events
    return events[0].message


def test_stereo_int16_at_44k_is_converted(demo) -> None:
    mono = tone(1.0, rate_hz=44_100)
    stereo = (np.stack([mono, mono * 0.5], axis=1) * 32767).astype(np.int16)
    events = run(greedy_engine(demo), UserTurn(audio=stereo, audio_rate_hz=44_100))
    assert any(isinstance(e, AudioChunk) for e in events)


@pytest.mark.parametrize(
    ("audio", "rate", "words"),
    [
        (np.zeros(0, dtype=np.float32), 16_000, "empty or too short"),
        (np.zeros(16_000, dtype=np.float32), 16_000, "silent"),
        (np.full(16_000, np.nan, dtype=np.float32), 16_000, "NaN"),
        (tone(1.0), 0, "sample rate"),
    ],
)
def test_unusable_audio_is_refused_with_a_reason(demo, audio, rate, words) -> None:
    engine = greedy_engine(demo)
    message = only_error(list(engine.respond(UserTurn(audio=audio, audio_rate_hz=rate), 1)))
    assert words in message
    assert engine.history == [] and engine.context.length == 0


def test_empty_turn_is_refused(demo) -> None:
    assert "empty" in only_error(list(greedy_engine(demo).respond(UserTurn(), 1)))


def test_oversized_image_is_downscaled(demo) -> None:
    big = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    engine = greedy_engine(demo, speak=False)
    run(engine, UserTurn(images=(big,), text="what is it"))
    grid = engine.context.segments[1].media["image_grid_thw"][0]
    assert int(grid[1] * grid[2]) * 16 * 16 <= 1280 * 1280 * 1.1


def test_failure_mid_turn_ends_the_turn_and_the_engine_recovers(demo) -> None:
    engine = greedy_engine(demo)
    run(engine, UserTurn(text="first"), 1)
    before = (engine.context.length, len(engine.history))
    talker_model = engine.talker.model
    calls = {"n": 0}
    original = talker_model.forward

    def failing_forward(*args, **kwargs):  # fault injection at the model boundary
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated CUDA error")
        return original(*args, **kwargs)

    talker_model.forward = failing_forward
    try:
        events = list(engine.respond(UserTurn(audio=tone(1.0)), 2))
    finally:
        del talker_model.forward
    assert isinstance(events[-1], EngineError) and "simulated CUDA error" in events[-1].message
    assert not any(isinstance(e, TurnFinished) for e in events)
    assert (engine.context.length, len(engine.history)) == before
    # The next turn is the one a conversation without the failed turn would give.
    twin = greedy_engine(demo)
    run(twin, UserTurn(text="first"), 1)
    run(engine, UserTurn(text="second"), 3)
    run(twin, UserTurn(text="second"), 3)
    assert engine.last_reply_ids == twin.last_reply_ids


def test_unknown_voice_is_refused(demo) -> None:
    with pytest.raises(ValueError, match=r"unknown voice 'bob'.*aiden, chelsie, ethan"):
        greedy_engine(demo, speaker="bob")
