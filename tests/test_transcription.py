"""The user's words of a spoken turn, transcribed by the same Thinker after the reply's text (issue 16):
the conversation the model sees stays as it was, and the reply's audio never waits for it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from events import AudioChunk, Event, TextDelta, TurnFinished, UserTranscript
from model.media_input import UserTurn
from tests.engine_helpers import greedy_engine, pcm_of, run, tone


def transcripts(events: list[Event]) -> list[UserTranscript]:
    return [e for e in events if isinstance(e, UserTranscript)]


def test_transcription_leaves_the_cache_and_the_next_replies_as_they_were(demo) -> None:
    heard = greedy_engine(demo)
    plain = greedy_engine(demo, transcribe=False)
    turn = UserTurn(audio=tone(2.0))
    with_words, without = run(heard, turn, 1), run(plain, turn, 1)
    assert [(t.turn_id, type(t.text)) for t in transcripts(with_words)] == [(1, str)]
    assert transcripts(without) == []
    assert heard.last_transcribe_s is not None and heard.last_transcribe_s > 0
    # The Thinker's cache: the same length and the same keys and values as without transcription.
    mine, theirs = heard.context.cache, plain.context.cache
    assert mine.get_seq_length() == theirs.get_seq_length() == heard.context.length
    for a, b in zip(mine.layers, theirs.layers, strict=True):
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
    # The next replies (typed, then spoken) are those of the conversation without transcription.
    for turn_id, next_turn in ((2, UserTurn(text="go on")), (3, UserTurn(audio=tone(1.5, 330.0)))):
        assert pcm_of(run(heard, next_turn, turn_id)).size > 0
        run(plain, next_turn, turn_id)
        assert heard.last_reply_ids == plain.last_reply_ids
        assert heard.last_codes is not None and plain.last_codes is not None
        assert torch.equal(heard.last_codes, plain.last_codes)
    assert heard.context.cache.get_seq_length() == plain.context.cache.get_seq_length()


@pytest.mark.parametrize("text_tokens", [1, 4])
def test_transcript_comes_after_the_text_and_the_first_audio(demo, text_tokens: int) -> None:
    """The transcript follows the reply's last text token and its first audio, and comes before
    TurnFinished; everything up to the first audio is what a reply without transcription yields,
    and so is all of its audio (order of events, never wall-clock time)."""
    settings = {"max_text_tokens": text_tokens, "max_codec_frames": 12}
    turn = UserTurn(audio=tone(2.0))
    events = run(greedy_engine(demo, **settings), turn)
    baseline = run(greedy_engine(demo, transcribe=False, **settings), turn)
    kinds = [type(e) for e in events]
    at = kinds.index(UserTranscript)
    last_text = max(i for i, kind in enumerate(kinds) if kind is TextDelta)
    first_audio = kinds.index(AudioChunk)
    assert last_text < at and first_audio < at
    assert kinds[-1] is TurnFinished and set(kinds[at + 1 : -1]) <= {AudioChunk}
    assert [type(e) for e in baseline[: first_audio + 1]] == kinds[: first_audio + 1]
    first = events[first_audio]
    assert isinstance(first, AudioChunk) and np.array_equal(first.pcm, baseline[first_audio].pcm)  # type: ignore[union-attr]
    assert np.array_equal(pcm_of(events), pcm_of(baseline))
    assert [e for e in events if isinstance(e, TextDelta)] == [
        e for e in baseline if isinstance(e, TextDelta)
    ]


def test_no_transcript_for_typed_turns_or_when_turned_off(demo) -> None:
    assert transcripts(run(greedy_engine(demo), UserTurn(text="hello"))) == []
    engine = greedy_engine(demo, speak=False)
    assert len(transcripts(run(engine, UserTurn(audio=tone(1.0))))) == 1  # text-only replies too
    engine.configure(transcribe=False)
    assert transcripts(run(engine, UserTurn(audio=tone(1.0)), 2)) == []
