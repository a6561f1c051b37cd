"""A yes or no said aloud to a tool that acts: the engine hears the spoken answer aside (the
Realtime protocol's out-of-band response) and the conversation the model sees is unchanged."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
import torch

from app.engine_client import LoadRequest
from app.realtime_client import RealtimeEngine
from app.session import Session
from app.tool_catalog import Tool, ToolOutput
from app.tool_config import ToolSettings
from app.tool_flow import ToolFlow
from events import (
    SpeechEnded,
    TextDelta,
    ToolCallFinished,
    ToolCallRequested,
    ToolConfirmationNeeded,
    TurnFinished,
)
from facts import to_int16
from model.media_input import UserTurn
from model.tool_format import ToolResult, ToolSpec
from tests.app.helpers import SHORT_PROMPT, FakePlayer
from tests.engine_helpers import greedy_engine, run, tone
from tests.realtime.conformance import check
from tests.realtime.inproc import greedy_host, server_thread
from tests.tools.forcing import force_reply

pytestmark = pytest.mark.timeout(300)

NOTE = ToolSpec("write_note", "Write a note.", {"type": "object", "properties": {"text": {"type": "string"}}})
CALL = '<tool_call>\n{"name": "write_note", "arguments": {"text": "milk"}}\n</tool_call><|im_end|>'
ASK = "Transcribe the audio into text."


def say(session: Session, audio: np.ndarray) -> None:
    """A spoken turn as the turn detector ends it."""
    now = time.perf_counter()
    session.on_audio_event(SpeechEnded(to_int16(audio), start_s=now - 1, end_s=now, audio_start_s=now - 1))


@pytest.mark.parametrize("in_conversation", [False, True])
def test_an_answer_heard_aside_leaves_the_conversation_as_it_was(demo, monkeypatch, in_conversation) -> None:
    engine = greedy_engine(demo, tools=(NOTE,), max_text_tokens=90, max_codec_frames=8)
    tokenizer = engine.tokenizer
    force_reply(monkeypatch, tokenizer, CALL, "yes, go ahead<|im_end|>")
    events = run(engine, UserTurn(text="note milk"), 1)
    (call,) = [e for e in events if isinstance(e, ToolCallRequested)]
    ids, history = engine.context.all_ids().clone(), list(engine.history)
    cached = engine.context.cache.get_seq_length()
    engine.listen(tone(0.6))  # the answer, prefilled as it is spoken, then heard aside
    instructions = "" if not in_conversation else None
    heard = engine.answer_aside(
        UserTurn(audio=tone(0.6), text=ASK), in_conversation=in_conversation, instructions=instructions
    )
    assert heard == "yes, go ahead"
    assert torch.equal(engine.context.all_ids(), ids) and engine.history == history
    assert engine.context.cache.get_seq_length() == cached and engine.conversation.live is None

    start = engine.context.length
    run(engine, UserTurn(tool_results=(ToolResult(call.call_id, "write_note", "noted"),)), 1)
    fed = engine.context.all_ids()[start : start + 40].tolist()
    expected = (
        "\n<|im_start|>user\n<tool_response>\nnoted\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )
    want = [
        tokenizer.convert_tokens_to_ids("<|im_end|>"),
        *tokenizer(expected, add_special_tokens=False)["input_ids"],
    ]
    assert fed[: len(want)] == want  # the result follows the call, with nothing of the answer between


def test_a_yes_said_aloud_over_the_protocol_runs_the_tool_and_an_unclear_answer_asks_again(
    qtbot: Any, demo: Any, monkeypatch: Any
) -> None:
    from openai.types.realtime.response_create_event_with_references_param import (
        ResponseCreateEventWithReferencesParam,
    )
    from pydantic import TypeAdapter

    with_references = TypeAdapter(ResponseCreateEventWithReferencesParam)
    host = greedy_host(demo)
    traced: list[tuple[str, dict[str, Any]]] = []
    seen: list[object] = []
    ran: list[dict[str, Any]] = []

    def write_note(arguments: dict[str, Any]) -> ToolOutput:
        ran.append(arguments)
        return ToolOutput("noted")

    note = Tool(NOTE, run=write_note)
    with server_thread(host) as (url, state):
        client = RealtimeEngine(FakePlayer(), url=url, trace=lambda side, event: traced.append((side, event)))
        flow = ToolFlow(client, ToolSettings(), builtins=[note])
        session = Session(client, tools=flow)
        flow.voice = True  # as with a microphone (the session has none here)
        session.reported.connect(seen.append)
        session.load(LoadRequest(source="", system_prompt=SHORT_PROMPT))
        flow.start()
        qtbot.waitUntil(lambda: session.model_info is not None, timeout=120_000)
        force_reply(monkeypatch, demo.processor.tokenizer, CALL, "a banana<|im_end|>", "Yes.<|im_end|>")
        session.send_text("note milk")
        asked = lambda: [e.question for e in seen if isinstance(e, ToolConfirmationNeeded)]  # noqa: E731
        qtbot.waitUntil(lambda: len(asked()) == 1, timeout=120_000)
        assert asked()[0].endswith("Say yes or no, or press a button.")
        say(session, tone(0.6))
        qtbot.waitUntil(lambda: len(asked()) == 2, timeout=120_000)
        assert asked()[1].startswith("I heard “a banana”.") and not ran  # asked again, nothing ran
        say(session, tone(0.5))
        qtbot.waitUntil(lambda: any(isinstance(e, TurnFinished) for e in seen), timeout=120_000)
        (conversation,) = state.conversations
        history = [(m.role, m.text[:15]) for m in conversation.engine.history]
        flow.close()
        assert client.stop()
    assert ran == [{"text": "milk"}]
    (finished,) = [e for e in seen if isinstance(e, ToolCallFinished)]
    assert finished.ok and finished.result == "noted"
    assert any(isinstance(e, TextDelta) for e in seen[seen.index(finished) :])  # the reply went on
    assert [role for role, _ in history] == ["user", "assistant", "user", "assistant"]  # no answer in it
    assert history[2][1].startswith("<tool_response>")
    for side, event in traced:
        if side == "sent" and event["type"] == "response.create" and "input" in event["response"]:
            with_references.validate_python(event)  # the SDK's type for input with item references
        else:
            check(event, "client" if side == "sent" else "server")
    sent = [e for side, e in traced if side == "sent"]
    asides = [
        e["response"] for e in sent if e["type"] == "response.create" and "conversation" in e["response"]
    ]
    assert [a["conversation"] for a in asides] == ["none", "none"]
    assert all(a["input"][0]["type"] == "item_reference" for a in asides)
    deleted = [
        e["item_id"] for side, e in traced if side == "received" and e["type"] == "conversation.item.deleted"
    ]
    assert deleted == [a["input"][0]["id"] for a in asides]


def test_vllm_omni_hears_the_answer_in_a_request_of_its_own(qtbot: Any) -> None:
    """vLLM-Omni keeps no state: the answer aside is one text-only request with that turn alone
    (against the stand-in server: vLLM-Omni needs a GPU)."""
    from app.tool_voice import VOICE_ASK
    from app.vllm_omni_client import VllmOmniEngine
    from events import AsideAnswer
    from tests.realtime.vllm_omni_fake import FakeVllmOmni

    fake = FakeVllmOmni()
    client = VllmOmniEngine(None, url=fake.start())
    heard: list[object] = []
    client.signals.reported.connect(heard.append)
    try:
        client.load(LoadRequest(source="", system_prompt=SHORT_PROMPT))
        client.set_tools((NOTE,))
        client.answer_aside(7, UserTurn(audio=tone(0.5), text=VOICE_ASK))
        qtbot.waitUntil(lambda: any(isinstance(e, AsideAnswer) for e in heard), timeout=60_000)
    finally:
        client.stop()
        fake.stop()
    (answer,) = [e for e in heard if isinstance(e, AsideAnswer)]
    assert answer == AsideAnswer(7, " ".join(fake.reply_words))
    request = fake.requests[-1]
    assert request["modalities"] == ["text"] and "tools" not in request
    (message,) = request["messages"]  # no system turn, no history
    assert [part["type"] for part in message["content"]] == ["input_audio", "text"]
    assert message["content"][1]["text"] == VOICE_ASK
