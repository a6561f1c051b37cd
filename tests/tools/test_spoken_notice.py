"""The assistant says that a tool still runs (issue 15): a spoken out-of-band response. The engine
speaks it on a context of its own and leaves the conversation exactly as it was."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import torch

from events import AudioChunk, TextDelta, ToolCallRequested, TurnFinished
from model.media_input import UserTurn
from model.spoken_aside import audio_samples
from model.tool_format import ToolResult, ToolSpec
from tests.engine_helpers import greedy_engine, run
from tests.realtime.conformance import recv_until
from tests.realtime.conftest import ask
from tests.realtime.inproc import greedy_host, server_thread
from tests.tools.forcing import force_reply

pytestmark = pytest.mark.timeout(300)

NOTE = ToolSpec("write_note", "Write a note.", {"type": "object", "properties": {"text": {"type": "string"}}})
CALL = 'Let me note that.<tool_call>\n{"name": "write_note", "arguments": {"text": "milk"}}\n</tool_call>'
CALL += "<|im_end|>"
NOTICE = "Still on the note, one moment.<|im_end|>"
REQUEST = "Tell the user in a few words that you are still working on write_note."


def cache_contents(cache: Any) -> list[torch.Tensor]:
    return [t.clone() for layer in cache.layers for t in (layer.keys, layer.values)]


def same_tensors(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b, strict=True)
    )


def test_a_spoken_notice_leaves_the_conversation_and_the_next_reply_as_they_were(demo, monkeypatch) -> None:
    engines = [greedy_engine(demo, tools=(NOTE,), max_text_tokens=90, max_codec_frames=12) for _ in range(2)]
    tokenizer = engines[0].tokenizer
    force_reply(monkeypatch, tokenizer, CALL, CALL, NOTICE)
    calls = []
    for engine in engines:
        events = run(engine, UserTurn(text="note milk"), 1)
        calls += [e for e in events if isinstance(e, ToolCallRequested)]
    assert len(calls) == 2
    with_notice, without = engines
    state = with_notice.conversation
    ids, history, unfed = state.context.all_ids().clone(), list(state.history), list(state.unfed)
    thinker_kv = cache_contents(state.context.cache)
    talker_kv, users = cache_contents(state.talker.cache), [id(s) for s in state.talker.users]

    said = list(with_notice.say_aside(REQUEST, 1_000_001))

    assert isinstance(said[-1], TurnFinished) and not said[-1].stats.cancelled
    assert {getattr(e, "turn_id", None) for e in said} == {1_000_001}
    assert "".join(e.text for e in said if isinstance(e, TextDelta)) == "Still on the note, one moment."
    assert audio_samples(said) > 0 and said[-1].stats.audio_samples == audio_samples(said)
    assert torch.equal(state.context.all_ids(), ids) and state.history == history and state.unfed == unfed
    assert same_tensors(cache_contents(state.context.cache), thinker_kv)
    assert same_tensors(cache_contents(state.talker.cache), talker_kv)
    assert [id(s) for s in state.talker.users] == users

    replies = []
    for engine, call in zip(engines, calls, strict=True):
        result = ToolResult(call.call_id, "write_note", "noted")
        events = run(engine, UserTurn(tool_results=(result,)), 1)
        replies.append(
            (engine.last_reply_ids, engine.last_codes, [e.pcm for e in events if isinstance(e, AudioChunk)])
        )
    (ids_a, codes_a, pcm_a), (ids_b, codes_b, pcm_b) = replies
    assert ids_a == ids_b and len(ids_a) > 0
    assert codes_a is not None and codes_b is not None and torch.equal(codes_a, codes_b)
    assert len(pcm_a) == len(pcm_b) and all(
        torch.equal(torch.from_numpy(a), torch.from_numpy(b)) for a, b in zip(pcm_a, pcm_b, strict=True)
    )
    assert with_notice.history == without.history


def test_a_cancelled_notice_stops_and_leaves_the_conversation_as_it_was(demo) -> None:
    import threading

    engine = greedy_engine(demo, max_text_tokens=24, max_codec_frames=12)
    run(engine, UserTurn(text="hello"), 1)
    ids, history = engine.context.all_ids().clone(), list(engine.history)
    cancel = threading.Event()
    said = []
    for event in engine.say_aside(REQUEST, 7, cancel):
        said.append(event)
        if isinstance(event, AudioChunk):
            cancel.set()  # the tool finished while the notice was being said
    assert isinstance(said[-1], TurnFinished) and said[-1].stats.cancelled
    assert sum(isinstance(e, AudioChunk) for e in said) == 1
    assert torch.equal(engine.context.all_ids(), ids) and engine.history == history


def notice_request(key: str) -> dict[str, Any]:
    """The app's request: said out of band, on a context of its own, in the session's voice."""
    response = {
        "conversation": "none",
        "output_modalities": ["audio"],
        "instructions": REQUEST,
        "input": [],
        "metadata": {"omnidesk_notice": key},
    }
    return {"type": "response.create", "response": response}


def second_reply(url: str, notices: bool) -> tuple[str, dict[str, Any]]:
    """A conversation of two typed turns, with spoken notices between them or not: the second
    reply's transcript and usage."""
    from websockets.sync.client import connect

    with connect(url) as ws:
        recv_until(ws, "session.created")
        ask(ws, "hello")
        recv_until(ws, "response.done")
        if notices:
            ws.send(json.dumps(notice_request("1")))
            recv_until(ws, "response.done")
        ask(ws, "hello again")
        events = recv_until(ws, "response.done")
    transcript = "".join(e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta")
    return transcript, events[-1]["response"]["usage"]


def test_a_spoken_out_of_band_response_streams_its_own_audio_and_adds_no_item(demo) -> None:
    from websockets.sync.client import connect

    host = greedy_host(demo)
    with server_thread(host) as (url, _state):
        with connect(url) as ws:
            recv_until(ws, "session.created")
            ws.send(json.dumps(notice_request("1")))
            said = recv_until(ws, "response.done")
            created = said[0]
            assert created["type"] == "response.created" and created["response"]["conversation_id"] is None
            response_id = created["response"]["id"]
            audio = [e for e in said if e["type"] == "response.output_audio.delta"]
            assert audio and {e["response_id"] for e in audio} == {response_id}
            assert sum(len(base64.b64decode(e["delta"])) // 2 for e in audio) > 0
            assert not [e for e in said if e["type"].startswith("conversation.item")]
            done = said[-1]["response"]
            assert done["id"] == response_id and done["status"] == "completed"
            assert done["metadata"] == {"omnidesk_notice": "1"}

            with host.lock:  # the engine is busy: the cancel arrives before the notice begins
                ws.send(json.dumps(notice_request("2")))
                cancelled_id = recv_until(ws, "response.created")[-1]["response"]["id"]
                ws.send(json.dumps({"type": "response.cancel", "response_id": cancelled_id}))
            cut = recv_until(ws, "response.done")
            assert cut[-1]["response"]["status"] == "cancelled"
            assert not [e for e in cut if e["type"] == "response.output_audio.delta"]

        assert second_reply(url, notices=True) == second_reply(url, notices=False)


def test_vllm_omni_says_the_notice_in_a_request_of_its_own(qtbot: Any) -> None:
    """vLLM-Omni keeps no state: the notice is one spoken request of its own (the persona's system
    turn and the request, no history, no tools), its audio under the notice's own turn id (against
    the stand-in server: vLLM-Omni needs a GPU)."""
    from app.engine_client import LoadRequest
    from app.vllm_omni_client import VllmOmniEngine
    from tests.app.helpers import SHORT_PROMPT, FakePlayer
    from tests.realtime.vllm_omni_fake import FakeVllmOmni

    fake = FakeVllmOmni()
    speaker = FakePlayer()
    client = VllmOmniEngine(speaker, url=fake.start())
    reported: list[object] = []
    client.signals.reported.connect(reported.append)
    try:
        client.load(LoadRequest(source="", system_prompt=SHORT_PROMPT, speaker="chelsie"))
        client.set_tools((NOTE,))
        client.say_notice(3, REQUEST)
        qtbot.waitUntil(lambda: -3 in speaker.finished, timeout=60_000)
        client.cancel_notice(3)
        qtbot.waitUntil(lambda: -3 in speaker.flushed, timeout=60_000)
    finally:
        client.stop()
        fake.stop()
    assert len(speaker.chunks) == fake.audio_chunks and {c.turn_id for c in speaker.chunks} == {-3}
    request = fake.requests[-1]
    assert (
        request["modalities"] == ["text", "audio"]
        and request["voice"] == "chelsie"
        and "tools" not in request
    )
    assert request["messages"] == [
        {"role": "system", "content": SHORT_PROMPT},
        {"role": "user", "content": REQUEST},
    ]
    assert client.history() == [] and not [e for e in reported if isinstance(e, TextDelta)]
