"""The server's speculative reply (`omnidesk.input_audio_buffer.speculate`): kept when the turn
ends at the pause, where its reply equals the in-process engine's for the same heard audio; dropped
when more audio comes, after which the reply equals that of an engine that never speculated."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import numpy as np
import pytest

from app.realtime_input import InputStream
from model.media_input import MODEL_AUDIO_RATE_HZ, UserTurn
from model.sampling import SamplingPlan
from realtime.host import ModelHost
from realtime.wire import SPECULATE, SPECULATIVE, from_wire
from tests.engine_helpers import SYSTEM, greedy_engine, pcm_of, run, text_of
from tests.realtime.conformance import recv_until
from tests.realtime.conftest import ask
from tests.realtime.inproc import server_thread
from tests.realtime.test_equality import audio_of
from tests.test_live_turn import speech_like

pytestmark = pytest.mark.timeout(600)

LIMITS = {"max_text_tokens": 8, "max_codec_frames": 8}
PIECE = MODEL_AUDIO_RATE_HZ // 2


class Heard:
    """The 16 kHz pieces the server makes of what the client sends, resampled as it does (a new
    stream after each speculation, whose request flushed it)."""

    def __init__(self) -> None:
        self.pieces: list[np.ndarray] = []
        self._resampler = from_wire()

    def send(self, ws: Any, events: list[dict[str, Any]]) -> None:
        for event in events:
            if event["type"] == "input_audio_buffer.append":
                wire = np.frombuffer(base64.b64decode(event["audio"]), "<i2")
                self.pieces.append(self._resampler.push(wire))
            elif event["type"] in (SPECULATE, "input_audio_buffer.commit"):
                self.pieces.append(self._resampler.push(np.zeros(0, np.int16), last=True))
                self._resampler = from_wire()
            ws.send(json.dumps(event))


def _stream(ws: Any, stream: InputStream, heard: Heard, audio: np.ndarray) -> None:
    for start in range(0, audio.size, PIECE):
        heard.send(ws, stream.pieces(audio[start : start + PIECE]))


def _wait_computed(state: Any) -> str:
    """Until the speculative reply has been computed to its end (held, nothing sent yet); its id."""
    (conversation,) = state.conversations
    deadline = time.monotonic() + 120
    while not (conversation.speculation is not None and conversation.speculation.gate.finished):
        assert time.monotonic() < deadline, "the speculative reply did not finish"
        time.sleep(0.02)
    return conversation.speculation.response.id


def _in_process(demo: Any, pieces: list[list[np.ndarray]]) -> list[Any]:
    """The same conversation on an engine of the test's own: the first exchange, then each turn's
    heard pieces listened to and answered."""
    engine = greedy_engine(demo, **LIMITS)
    run(engine, UserTurn(text="remember the word apple"), 1)
    replies = []
    for number, turn_pieces in enumerate(pieces, start=2):
        for piece in turn_pieces:
            engine.listen(piece)
        replies.append(run(engine, UserTurn(audio=np.concatenate(turn_pieces)), number))
    return replies


def test_speculative_replies_kept_and_dropped_equal_plain_ones(demo: Any) -> None:
    from websockets.sync.client import connect

    plan = SamplingPlan.from_generation_config(demo.model.generation_config).greedy()
    host = ModelHost(demo.model, demo.processor, {"source": "demo"}, {"sampling": plan, **LIMITS})
    first, second = (
        (speech_like(3.0, seed=5) * 32767).astype(np.int16),
        (speech_like(2.0, seed=6) * 32767).astype(np.int16),
    )
    stream, turns = InputStream(), []
    with server_thread(host) as (url, state), connect(url) as ws:
        recv_until(ws, "session.created")
        ws.send(
            json.dumps({"type": "session.update", "session": {"type": "realtime", "instructions": SYSTEM}})
        )
        recv_until(ws, "session.updated")
        ask(ws, "remember the word apple")
        recv_until(ws, "response.done")

        # Kept: the turn ends at the pause; its reply was computed before the commit.
        heard = Heard()
        _stream(ws, stream, heard, first)
        heard.send(ws, stream.speculate())
        kept_id = _wait_computed(state)
        heard.send(ws, stream.turn(UserTurn(audio=first), 2))
        kept = recv_until(ws, "response.done")
        turns.append([p for p in heard.pieces if p.size])
        (conversation,) = state.conversations
        assert conversation.speculation is None and conversation.replies == 2

        # Dropped: the user goes on after the pause; the reply is to the whole turn.
        heard = Heard()
        _stream(ws, stream, heard, first)
        heard.send(ws, stream.speculate())
        dropped_id = _wait_computed(state)
        _stream(ws, stream, heard, second)
        heard.send(ws, stream.turn(UserTurn(audio=np.concatenate([first, second])), 3))
        dropped = recv_until(ws, "response.done")
        turns.append([p for p in heard.pieces if p.size])
        server_history = list(conversation.engine.history)

        # A barge-in: the reply the user cut is truncated while a speculative one waits; it is that
        # reply (not the speculative one) that is cut, and the speculative one is gone.
        _stream(ws, stream, Heard(), first)
        Heard().send(ws, stream.speculate())
        _wait_computed(state)
        reply_item = dropped[-1]["response"]["output"][0]["id"]
        truncate = {"type": "conversation.item.truncate", "item_id": reply_item, "content_index": 0}
        ws.send(json.dumps({**truncate, "audio_end_ms": 0}))
        recv_until(ws, "conversation.item.truncated")
        assert conversation.speculation is None
        after_cut = conversation.engine.history
        assert [(m.role, m.turn_id) for m in after_cut] == [(m.role, m.turn_id) for m in server_history]
        assert after_cut[-1].interrupted and not server_history[-1].interrupted

    assert [(e["response"]["id"], e.get(SPECULATIVE)) for e in kept if e["type"] == "response.created"] == [
        (kept_id, True)
    ]
    assert kept[-1]["response"]["metadata"] == {"turn_id": "2"}
    assert [e["response"]["id"] != dropped_id for e in dropped if e["type"] == "response.created"] == [True]
    local = _in_process(demo, turns)
    for served, reply in zip((kept, dropped), local, strict=True):
        transcript = "".join(
            e["delta"] for e in served if e["type"] == "response.output_audio_transcript.delta"
        )
        assert transcript == text_of(reply)
        np.testing.assert_allclose(audio_of(served), pcm_of(reply), atol=1e-4)
    assert [(m.role, m.turn_id) for m in server_history] == [
        ("user", 1), ("assistant", 1), ("user", 2), ("assistant", 2), ("user", 3), ("assistant", 3)
    ]  # fmt: skip
