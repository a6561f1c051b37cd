"""A reply computed at a pause and taken back when the user goes on leaves nothing behind: the next
reply equals that of a conversation that never had it (Thinker, Talker, history). A kept one is
checked where it is held, in the server (tests/realtime/test_speculation.py)."""

from __future__ import annotations

import numpy as np
import torch

from events import AudioChunk
from model.media_input import UserTurn
from model.speculation import checkpoint, rewind
from tests.engine_helpers import greedy_engine, run
from tests.test_live_turn import quantized, speech_like

RATE = 16_000


def _first_exchange(engine) -> None:
    run(engine, UserTurn(text="remember the word apple"), 1)


def _spoken(engine, audio: np.ndarray, turn_id: int):
    events = run(engine, UserTurn(audio=audio), turn_id)
    return engine.last_reply_ids, engine.last_codes, events


def test_a_discarded_speculation_leaves_no_trace(demo) -> None:
    audio = quantized(speech_like(6.0, seed=3))
    pause = 4 * RATE  # the user paused here, then went on
    plain = greedy_engine(demo)
    _first_exchange(plain)
    plain.listen(audio[:pause])
    plain.listen(audio[pause:])
    expected_ids, expected_codes, _ = _spoken(plain, audio, 2)

    engine = greedy_engine(demo)
    _first_exchange(engine)
    engine.listen(audio[:pause])
    before = (engine.conversation.context.length, list(engine.history), len(engine.conversation.talker.users))
    point = checkpoint(engine)
    speculative = run(engine, UserTurn(audio=audio[:pause]), 2)
    assert any(isinstance(e, AudioChunk) for e in speculative)  # a whole reply was computed
    rewind(engine, point)
    after = (engine.conversation.context.length, list(engine.history), len(engine.conversation.talker.users))
    assert after == before
    engine.listen(audio[pause:])
    ids, codes, _ = _spoken(engine, audio, 2)
    assert ids == expected_ids
    assert torch.equal(codes, expected_codes)
    assert [m.role for m in engine.history] == ["user", "assistant", "user", "assistant"]
    assert engine.history == plain.history
