"""Greedy streaming equals transformers' own `generate()`: text tokens and codec codes, and the
streamed audio equals a one-shot Code2Wav decode of those codes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from events import AudioChunk, TextDelta, TurnFinished
from model.media_input import UserTurn
from tests.engine_helpers import generate_oracle, greedy_engine, pcm_of, picture, run, tone

TEXT_TOKENS = 12
FRAMES = 16


def check_against_generate(demo, turn: UserTurn, speaker: str) -> None:
    engine = greedy_engine(demo, speaker=speaker, max_text_tokens=TEXT_TOKENS, max_codec_frames=FRAMES)
    events = run(engine, turn)
    ids, codes = generate_oracle(demo, turn, speaker=speaker, max_text=TEXT_TOKENS, max_frames=FRAMES)
    streamed_ids = engine.last_reply_ids
    assert streamed_ids == ids
    assert engine.last_codes is not None and codes is not None
    assert torch.equal(engine.last_codes, codes)
    with torch.inference_mode():
        one_shot = demo.model.code2wav(codes.unsqueeze(0))[0, 0].numpy()
    pcm = pcm_of(events)
    assert pcm.shape == one_shot.shape
    np.testing.assert_allclose(pcm, one_shot, atol=1e-4)


@pytest.mark.parametrize("speaker", ["ethan", "chelsie", "aiden"])
def test_audio_turn_matches_generate_for_each_voice(demo, speaker: str) -> None:
    check_against_generate(demo, UserTurn(audio=tone(1.5)), speaker)


def test_text_turn_matches_generate(demo) -> None:
    check_against_generate(demo, UserTurn(text="What is the weather like?"), "ethan")


def test_image_and_audio_turn_matches_generate(demo) -> None:
    """generate() itself needs the Talker-config workaround here (see engine_helpers); ours does not."""
    check_against_generate(
        demo, UserTurn(audio=tone(1.0), images=(picture(64, 64),), text="what is this"), "ethan"
    )


def test_voices_sound_different(demo) -> None:
    replies = {}
    for speaker in ("ethan", "chelsie"):
        engine = greedy_engine(demo, speaker=speaker)
        run(engine, UserTurn(text="hello"))
        assert engine.last_codes is not None
        replies[speaker] = engine.last_codes
    assert not torch.equal(replies["ethan"], replies["chelsie"])


def test_events_stream_in_order_and_first_audio_comes_early(demo) -> None:
    engine = greedy_engine(demo, max_codec_frames=12, first_chunk_frames=1, chunk_frames=4)
    events = run(engine, UserTurn(audio=tone(1.0)))
    kinds = [type(e).__name__ for e in events]
    assert kinds[-1] == "TurnFinished" and kinds.count("TurnFinished") == 1
    assert kinds.index("TextDelta") < kinds.index("AudioChunk")
    chunks = [e for e in events if isinstance(e, AudioChunk)]
    assert chunks[0].sample_rate == 24_000 and chunks[0].pcm.dtype == np.float32
    # The first chunk is the first frame alone: audio leaves after one codec frame.
    assert 0 < chunks[0].pcm.size <= 1920
    assert [c.first_frame_index for c in chunks] == sorted(c.first_frame_index for c in chunks)
    finished = events[-1]
    assert isinstance(finished, TurnFinished)
    stats = finished.stats
    assert stats.codec_frames == 12 and stats.audio_samples == sum(c.pcm.size for c in chunks)
    stamps = [stats.prefill_done_s, stats.first_text_s, stats.first_audio_s, stats.finished_s]
    assert all(s is not None for s in stamps) and stamps == sorted(stamps)  # type: ignore[type-var]
    assert any(isinstance(e, TextDelta) and e.text for e in events)
