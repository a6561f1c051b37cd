"""Multi-turn: the KV cache lives across turns and equals a one-shot prefill of the conversation;
cancelling stops within a step; a cut reply keeps only what was heard."""

from __future__ import annotations

import threading

import numpy as np
import torch

from events import AudioChunk, Event, TurnFinished
from model.media_input import UserTurn
from tests.engine_helpers import greedy_engine, picture, run, text_of, tone

TURNS = [
    UserTurn(audio=tone(1.2, 220)),
    UserTurn(text="and then?"),
    UserTurn(audio=tone(0.8, 330), images=(picture(48, 32, seed=3),)),
]


def cache_tensors(engine) -> list[torch.Tensor]:
    cache = engine.context.cache
    return [t for layer in cache.layers for t in (layer.keys, layer.values)]


def test_cached_turns_equal_a_one_shot_prefill(demo) -> None:
    incremental = greedy_engine(demo)
    rebuilt = greedy_engine(demo)
    for turn_id, turn in enumerate(TURNS, start=1):
        run(incremental, turn, turn_id)
        run(rebuilt, turn, turn_id)
    # Only the new tokens of each turn were fed...
    assert incremental.context.cache.get_seq_length() == incremental.context.length
    rebuilt.rebuild_cache()
    assert rebuilt.context.length == incremental.context.length
    for a, b in zip(cache_tensors(incremental), cache_tensors(rebuilt), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # ...and the next reply is the same either way, text and speech: the incremental engine's Talker
    # keeps the user turns it heard and is fed only the new one, the rebuilt one hears them all again.
    run(incremental, UserTurn(text="last one"), 9)
    run(rebuilt, UserTurn(text="last one"), 9)
    assert incremental.last_reply_ids == rebuilt.last_reply_ids
    assert incremental.last_codes is not None and rebuilt.last_codes is not None
    assert torch.equal(incremental.last_codes, rebuilt.last_codes)


def test_history_has_system_prompt_first_and_both_sides(demo) -> None:
    engine = greedy_engine(demo)
    run(engine, UserTurn(text="hello"), 1)
    run(engine, UserTurn(audio=tone(1.0)), 2)
    roles = [m.role for m in engine.history]
    assert roles == ["user", "assistant", "user", "assistant"]
    first = engine.tokenizer.decode(engine.context.segments[0].ids[:20])
    assert first.startswith("<|im_start|>system\n" + engine.settings.system_prompt[:5])
    assert engine.history[2].audio_s == 1.0


def test_new_persona_starts_a_new_conversation(demo) -> None:
    engine = greedy_engine(demo)
    run(engine, UserTurn(text="hello"), 1)
    engine.configure(system_prompt="You are a pirate.")
    assert engine.history == [] and engine.context.length == 0
    run(engine, UserTurn(text="hello"), 2)
    assert "pirate" in engine.tokenizer.decode(engine.context.segments[0].ids)


def test_cancel_stops_within_one_step_and_truncates_to_what_was_heard(demo) -> None:
    engine = greedy_engine(demo, max_text_tokens=40, max_codec_frames=60, chunk_frames=1)
    cancel = threading.Event()
    events: list[Event] = []
    after_cancel: list[Event] = []
    for event in engine.respond(UserTurn(audio=tone(1.0)), 1, cancel):
        (after_cancel if cancel.is_set() else events).append(event)
        if isinstance(event, AudioChunk) and event.first_frame_index >= 4 and not cancel.is_set():
            cancel.set()
    # After the flag: nothing but the end of the turn.
    assert [type(e) for e in after_cancel] == [TurnFinished]
    assert isinstance(after_cancel[0], TurnFinished) and after_cancel[0].stats.cancelled
    reply = engine.last_reply_ids
    assert len(reply) < 40
    heard_samples = 3 * 1920 + 100  # the user heard 3 frames and a bit of the 4th
    kept = engine.truncate_last_reply(heard_samples)
    assert engine.history[-1].interrupted and engine.history[-1].text == kept
    assert kept == engine.tokenizer.decode(reply[:4], skip_special_tokens=True)
    assert engine.context.cache.get_seq_length() == engine.context.length
    # The next turn sees exactly the cut conversation: same as a one-shot prefill of it.
    twin = greedy_engine(demo, max_text_tokens=40, max_codec_frames=60)
    twin.conversation = engine.conversation.snapshot()  # shares the cache until the rebuild
    twin.rebuild_cache()
    run(engine, UserTurn(text="go on"), 2)
    run(twin, UserTurn(text="go on"), 2)
    assert engine.last_reply_ids == twin.last_reply_ids


def test_text_only_engine_streams_text_without_audio(demo) -> None:
    engine = greedy_engine(demo, speak=False)
    events = run(engine, UserTurn(text="hello"))
    assert text_of(events) and not any(isinstance(e, AudioChunk) for e in events)


def test_reply_is_audible(demo) -> None:
    """The demo's speech is noise, but loud enough to hear: RMS of a reply at least -30 dBFS."""
    engine = greedy_engine(demo, max_codec_frames=25)
    events = run(engine, UserTurn(audio=tone(1.0)))
    pcm = np.concatenate([e.pcm for e in events if isinstance(e, AudioChunk)])
    assert 20 * np.log10(np.sqrt(np.mean(pcm**2))) >= -30


def test_context_budget_drops_old_frames_first_then_old_turns(demo) -> None:
    from model.context import has_frames
    from model.media_input import VideoClip

    engine = greedy_engine(demo, speak=False, max_text_tokens=4, max_context_tokens=1000)
    frames = np.random.default_rng(0).integers(0, 256, (8, 240, 320, 3), dtype=np.uint8)
    video_turn = UserTurn(audio=tone(4.0), video=VideoClip(frames, 2.0))
    run(engine, video_turn, 1)
    run(engine, video_turn, 2)
    users = [s for s in engine.context.segments if s.kind == "user"]
    assert [has_frames(s) for s in users] == [True, True]
    run(engine, video_turn, 3)
    users = [s for s in engine.context.segments if s.kind == "user"]
    # The oldest turns lost their frames (their audio stayed); the newest kept its own.
    assert has_frames(users[-1]) and not has_frames(users[0])
    assert all("input_features" in s.media for s in users)
    assert engine.context.cache.get_seq_length() == engine.context.length <= 1000
    for turn_id in range(4, 16):
        run(engine, UserTurn(audio=tone(6.0)), turn_id)
        assert engine.context.length <= 1000
    # Old turns left whole; the system prompt stays first.
    assert engine.context.segments[0].kind == "system"
    assert len([s for s in engine.context.segments if s.kind == "user"]) < 15
    assert engine.context.cache.get_seq_length() == engine.context.length
