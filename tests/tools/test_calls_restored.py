"""Tool calls and their results survive a new engine: the client's copy of the conversation keeps
each reply's calls and the results that answered them, and gives them back as the model read them
(the reply up to its calls with the calls, the tool-response turn, the rest of the reply)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.client_history import Exchange
from app.engine_client import LoadRequest
from app.realtime_client import RealtimeEngine
from app.session import Session
from app.tool_catalog import Tool, ToolOutput
from app.tool_config import ToolSettings
from app.tool_flow import ToolFlow
from events import EngineConnection, ToolCallFinished, TurnFinished
from model.tool_format import ToolSpec
from tests.app.helpers import SHORT_PROMPT, FakePlayer
from tests.realtime.inproc import greedy_host, server_thread
from tests.tools.forcing import force_reply

pytestmark = pytest.mark.timeout(300)

CLOCK = ToolSpec("date_time", "The date and time.", read_only=True)
CALL = '<tool_call>\n{"name": "date_time", "arguments": {}}\n</tool_call><|im_end|>'


def test_an_exchange_with_calls_is_given_back_as_the_model_read_it() -> None:
    exchange = Exchange(3, "time?", reply="Let me see. It is noon.", calls="<tool_call>c</tool_call>",
                        results="<tool_response>\nnoon\n</tool_response>", said_before=12)  # fmt: skip
    first, rest = exchange.as_read()
    assert (first.text, first.reply) == ("time?", "Let me see. <tool_call>c</tool_call>")
    assert (rest.text, rest.reply) == ("<tool_response>\nnoon\n</tool_response>", "It is noon.")
    assert Exchange(4, "hi", reply="hello").as_read() == [Exchange(4, "hi", reply="hello")]


def test_a_new_engine_gets_the_calls_and_results_of_earlier_turns(
    qtbot: Any, demo: Any, monkeypatch: Any
) -> None:
    host = greedy_host(demo, max_text_tokens=200)
    seen: list[object] = []
    clock = Tool(CLOCK, run=lambda _: ToolOutput("Friday 12:00"))
    with server_thread(host) as (url, state):
        client = RealtimeEngine(FakePlayer(), url=url)
        flow = ToolFlow(client, ToolSettings(), builtins=[clock])
        session = Session(client, tools=flow)
        session.reported.connect(seen.append)
        session.load(LoadRequest(source="", system_prompt=SHORT_PROMPT))
        flow.start()
        qtbot.waitUntil(lambda: session.model_info is not None, timeout=120_000)
        force_reply(monkeypatch, demo.processor.tokenizer, "Ok.\n" + CALL, "It is noon.<|im_end|>")
        session.send_text("what time is it?")
        qtbot.waitUntil(lambda: any(isinstance(e, TurnFinished) for e in seen), timeout=120_000)
        assert [e.ok for e in seen if isinstance(e, ToolCallFinished)] == [True]
        (first,) = state.conversations
        client.close_link()  # the link drops: a new engine, the conversation replayed into it

        def restored() -> bool:
            fresh = [c for c in state.conversations if c is not first]
            return bool(fresh) and fresh[0].engine is not None and len(fresh[0].engine.history) == 4

        qtbot.waitUntil(restored, timeout=120_000)
        (again,) = [c for c in state.conversations if c is not first]
        text = demo.processor.tokenizer.decode(again.engine.context.all_ids())
        flow.close()
        assert client.stop()
    assert any(isinstance(e, EngineConnection) and not e.lost for e in seen)
    read = (
        'Ok.\n<tool_call>\n{"name": "date_time", "arguments": {}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\nFriday 12:00\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )
    assert read in text  # the call and its result, as in the first engine


def test_a_continued_past_conversation_gives_back_its_calls_and_results(tmp_path: Path) -> None:
    from app.journal import list_conversations, load_conversation
    from app.resume import CHARS_PER_TOKEN, TURN_TOKENS, restore_plan
    from tests.app.test_journal import write_journal

    call = {"kind": "tool_call", "time": 2.0, "turn_id": 1, "call_id": "c1", "name": "date_time",
            "arguments": "{}", "result": "Friday 12:00", "ok": True, "message": "", "took_s": 0.0,
            "said": 4}  # fmt: skip
    write_journal(tmp_path, "conversation-1.jsonl", [
        {"kind": "user", "time": 1.0, "turn_id": 1, "text": "what time is it?", "audio_s": 0.0},
        call,
        {"kind": "assistant", "time": 3.0, "turn_id": 1, "text": "Ok.\nIt is noon.", "interrupted": False},
    ])  # fmt: skip
    (info,) = list_conversations(tmp_path).conversations
    plan = restore_plan(load_conversation(info))
    (exchange,) = plan.exchanges
    first, rest = exchange.as_read()
    assert first.reply == 'Ok.\n<tool_call>\n{"name": "date_time", "arguments": {}}\n</tool_call>'
    assert (rest.text, rest.reply) == ("<tool_response>\nFriday 12:00\n</tool_response>", "It is noon.")
    # The budget's estimate counts what the model will read: the calls, the results' own turn too.
    read = len(first.text + (first.reply or "") + rest.text + (rest.reply or ""))
    assert plan.estimated_tokens >= 2 * TURN_TOKENS + read // CHARS_PER_TOKEN
