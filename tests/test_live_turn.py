"""A turn prefilled while it is spoken gives the same reply as the same turn prefilled at once;
an abandoned turn leaves nothing behind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from events import TurnFinished
from model.media_input import UserTurn, VideoClip
from tests.engine_helpers import greedy_engine, run, tone

RATE = 16_000
FPS = 2.0


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Voiced bursts over a noise floor: a signal whose features do not depend on how much follows."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 1.3 * t) ** 2
    voiced = 0.2 * envelope * np.sin(2 * np.pi * (140 + 30 * np.sin(2 * np.pi * 0.7 * t)) * t)
    return (voiced + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def camera(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (int(seconds * FPS), 120, 160, 3), dtype=np.uint8)


def feed_in_pieces(engine, audio: np.ndarray, frames: np.ndarray | None, piece_s: list[float]) -> int:
    """Feed `audio` (and its frames) in pieces of the given lengths, cycling; returns windows prefilled."""
    done = sent_frames = 0
    windows = 0
    i = 0
    while done < audio.size:
        n = int(piece_s[i % len(piece_s)] * RATE)
        chunk = audio[done : done + n]
        done += chunk.size
        new_frames: list[np.ndarray] = []
        if frames is not None:
            due = min(len(frames), int(done / RATE * FPS))
            new_frames = list(frames[sent_frames:due])
            sent_frames = due
        windows = engine.listen(chunk, new_frames, FPS if frames is not None else None)
        i += 1
    return windows


def reply_of(engine, turn: UserTurn, turn_id: int = 1) -> tuple[list[int], torch.Tensor, TurnFinished]:
    events = run(engine, turn, turn_id)
    finished = events[-1]
    assert isinstance(finished, TurnFinished) and engine.last_codes is not None
    return engine.last_reply_ids, engine.last_codes, finished


def quantized(audio: np.ndarray) -> np.ndarray:
    """The audio as the microphone delivers it (int16), so both paths see the same samples."""
    return (audio * 32767).astype(np.int16)


def live_prefilled_tokens(demo, turn: UserTurn, fed: np.ndarray | None, piece_s: float, windows: int) -> int:
    """Feed the turn's audio (and `fed` frames) live in pieces, expect `windows` windows, check the
    reply equals the one-shot reply of `turn`; the tokens the live prefill kept."""
    expected = reply_of(greedy_engine(demo), turn)
    live = greedy_engine(demo)
    assert feed_in_pieces(live, np.asarray(turn.audio), fed, [piece_s]) == windows
    got = reply_of(live, turn)
    assert got[0] == expected[0] and torch.equal(got[1], expected[1])
    return got[2].stats.live_prefilled_tokens


@pytest.mark.parametrize("with_camera", [False, True], ids=["audio", "audio+camera"])
def test_twenty_second_turn_fed_in_pieces_equals_one_shot(demo, with_camera: bool) -> None:
    audio = quantized(speech_like(20.0))
    frames = camera(20.0) if with_camera else None
    turn = UserTurn(audio=audio, video=VideoClip(frames, FPS) if frames is not None else None)
    one_shot = reply_of(greedy_engine(demo), turn)
    live = greedy_engine(demo)
    windows = feed_in_pieces(live, audio, frames, [0.5])
    assert windows == 2  # 8 s windows final before the end of a 20 s turn
    streamed = reply_of(live, turn)
    assert streamed[0] == one_shot[0]
    assert torch.equal(streamed[1], one_shot[1])
    # Only the last part was left for the end of the turn, for the Thinker and for the Talker.
    assert streamed[2].stats.live_prefilled_tokens > 0
    assert streamed[2].stats.new_prompt_tokens == one_shot[2].stats.new_prompt_tokens
    assert 0 < streamed[2].stats.talker_prefill_tokens < one_shot[2].stats.talker_prefill_tokens


def test_awkward_pieces_across_window_boundaries_equal_one_shot(demo) -> None:
    audio = quantized(speech_like(17.3, seed=2))
    turn = UserTurn(audio=audio, text="and this?")
    first = UserTurn(text="hello")
    reference = greedy_engine(demo)
    run(reference, first, 1)
    expected = reply_of(reference, turn, 2)
    live = greedy_engine(demo)
    run(live, first, 1)
    # Pieces that straddle the 8 s boundaries at odd places.
    feed_in_pieces(live, audio, None, [7.93, 0.11, 0.013, 3.7, 5.21])
    got = reply_of(live, turn, 2)
    assert got[0] == expected[0] and torch.equal(got[1], expected[1])
    assert got[2].stats.live_prefilled_tokens > 0


def test_a_louder_ending_keeps_the_windows_fed_before_it(demo) -> None:
    """Digital silence, then speech: the whole turn's loudest sound would move the extractor's floor
    under the first window, but a window is floored by the turn up to its own end, so it stays in
    the cache, and the reply equals the one-shot reply of the same turn."""
    audio = np.concatenate([np.zeros(9 * RATE, np.float32), speech_like(4.0)])
    audio = quantized(audio)
    assert live_prefilled_tokens(demo, UserTurn(audio=audio), None, 1.0, windows=1) > 0


def test_audio_that_differs_from_what_was_fed_redoes_the_windows_from_there(demo) -> None:
    """The turn that ends is checked against the audio fed while it was spoken: a sample changed
    in the second window keeps the first and prefills the rest again, and the reply still equals
    the one-shot reply of the turn as it ended."""
    fed = quantized(speech_like(18.0, seed=4))
    audio = fed.copy()
    audio[12 * RATE] += 1
    turn = UserTurn(audio=audio)
    expected = reply_of(greedy_engine(demo), turn)
    live = greedy_engine(demo)
    assert feed_in_pieces(live, fed, None, [1.0]) == 2
    got = reply_of(live, turn)
    assert got[0] == expected[0] and torch.equal(got[1], expected[1])
    first_window = reply_of_window_tokens(demo, fed)
    assert got[2].stats.live_prefilled_tokens == first_window


def reply_of_window_tokens(demo, audio: np.ndarray) -> int:
    """The tokens a live turn keeps when only its first window matches."""
    live = greedy_engine(demo)
    feed_in_pieces(live, audio[: 9 * RATE], None, [1.0])
    return reply_of(live, UserTurn(audio=audio[: 9 * RATE]))[2].stats.live_prefilled_tokens


def test_a_frame_that_differs_from_the_one_fed_redoes_its_window(demo) -> None:
    """Fed windows are checked against the turn's frames as they came (only the tail is fitted at
    the end): a frame of the first window that is not the one fed redoes the windows from there,
    and an odd frame count at the end is padded as the one-shot path pads it."""
    audio = quantized(speech_like(17.0, seed=3))
    fed = camera(17.0, seed=3)
    frames = fed.copy()
    frames[5] = 255 - frames[5]
    frames = frames[:-1]  # 33 frames: the tail's count is odd
    turn = UserTurn(audio=audio, video=VideoClip(frames, FPS))
    assert live_prefilled_tokens(demo, turn, fed, 0.5, windows=2) == 0


def test_a_camera_turn_ending_just_after_a_window_is_answered(demo) -> None:
    """16.3 s at 2 fps: the 32 frames all lie in the two fed windows, so the last of them is
    encoded again with the tail (a tail without frames failed the whole turn)."""
    audio = quantized(speech_like(16.3, seed=3))
    frames = camera(16.3, seed=3)
    turn = UserTurn(audio=audio, video=VideoClip(frames, FPS))
    assert live_prefilled_tokens(demo, turn, frames, 0.5, windows=2) > 0


def test_abandoned_turn_leaves_cache_and_history_as_before(demo) -> None:
    engine = greedy_engine(demo)
    run(engine, UserTurn(text="hello"), 1)
    before = (engine.context.length, engine.context.cache.get_seq_length(), list(engine.history))
    feed_in_pieces(engine, quantized(speech_like(10.0)), None, [0.4])
    assert engine.context.cache.get_seq_length() > before[1]
    engine.abandon_turn()
    assert (engine.context.length, engine.context.cache.get_seq_length(), engine.history) == before
    never = greedy_engine(demo)
    run(never, UserTurn(text="hello"), 1)
    follow_up = UserTurn(audio=tone(2.0))
    assert reply_of(engine, follow_up, 2)[0] == reply_of(never, follow_up, 2)[0]


def test_the_end_of_a_turn_positions_its_tail_alone(demo, monkeypatch) -> None:
    """The fed windows keep the TM-RoPE positions they were fed at: the end of a turn walks only
    the tail (and its span's opening) through `get_rope_index`, as many tokens after 33 s as after
    17 s; the reply still equals the one-shot reply, and the turn's segment (its pixels a view of
    the live turn's buffer) holds what the one-shot segment holds, for a later rebuild."""
    rope = demo.model.thinker.model
    real = rope.get_rope_index
    walked: list[int] = []

    def counting(input_ids: torch.Tensor, *args, **kwargs):
        walked.append(int(input_ids.shape[-1]))
        return real(input_ids, *args, **kwargs)

    monkeypatch.setattr(rope, "get_rope_index", counting)
    left = []
    for seconds in (17.0, 33.0):
        audio, frames = quantized(speech_like(seconds, seed=4)), camera(seconds, seed=4)
        turn = UserTurn(audio=audio, video=VideoClip(frames, FPS))
        one_shot = greedy_engine(demo, transcribe=False)
        expected = reply_of(one_shot, turn)
        live = greedy_engine(demo, transcribe=False)
        feed_in_pieces(live, audio, frames, [0.5])
        walked.clear()
        got = reply_of(live, turn)
        assert got[0] == expected[0] and torch.equal(got[1], expected[1])
        ours, theirs = (next(s for s in e.context.segments if s.media) for e in (live, one_shot))
        assert torch.equal(ours.ids, theirs.ids) and ours.media.keys() == theirs.media.keys()
        assert all(torch.equal(ours.media[k], theirs.media[k]) for k in ours.media)
        stats = got[2].stats
        left.append(stats.new_prompt_tokens - stats.live_prefilled_tokens)
        assert sum(walked) == left[-1] + 2  # the tail after its vision and audio starts
    assert left[0] == left[1]
