"""Tools over the Realtime protocol, as vLLM-Omni carries them: `session.update` with `tools`, the
model's call as a `function_call` output item with `response.function_call_arguments.delta/done`,
its result back as a `function_call_output` item and `response.create`; the app's client and tool
flow run it, and the reply goes on in the same turn. Every event is checked against the `openai`
package's models."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.engine_client import LoadRequest
from app.realtime_client import RealtimeEngine
from app.session import Session
from app.tool_catalog import Tool, ToolOutput
from app.tool_config import ToolSettings
from app.tool_flow import ToolFlow
from events import TextDelta, ToolCallFinished, ToolCallRequested, TurnFinished
from model.tool_format import ToolSpec
from tests.app.helpers import SHORT_PROMPT, FakePlayer
from tests.realtime.conformance import check
from tests.realtime.inproc import greedy_host, server_thread
from tests.tools.forcing import force_reply

pytestmark = pytest.mark.timeout(300)

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}
ADD = Tool(ToolSpec("add", "Add two integers.", SCHEMA, True), run=lambda a: ToolOutput(str(a["a"] + a["b"])))
CALL = '<tool_call>\n{"name": "add", "arguments": {"a": 20, "b": 22}}\n</tool_call><|im_end|>'


def test_a_call_crosses_the_protocol_and_the_reply_goes_on(qtbot: Any, demo: Any, monkeypatch: Any) -> None:
    host = greedy_host(demo)
    traced: list[tuple[str, dict[str, Any]]] = []
    seen: list[object] = []
    with server_thread(host) as (url, _state):
        client = RealtimeEngine(FakePlayer(), url=url, trace=lambda side, event: traced.append((side, event)))
        flow = ToolFlow(client, ToolSettings(), builtins=[ADD])
        session = Session(client, tools=flow)
        session.reported.connect(seen.append)
        session.load(LoadRequest(source="", system_prompt=SHORT_PROMPT))
        flow.start()
        qtbot.waitUntil(lambda: session.model_info is not None, timeout=120_000)
        force_reply(monkeypatch, demo.processor.tokenizer, CALL)
        turn_id = session.send_text("twenty and twenty-two?")
        qtbot.waitUntil(lambda: any(isinstance(e, TurnFinished) for e in seen), timeout=120_000)
        flow.close()
        assert client.stop()
    for side, event in traced:
        check(event, "client" if side == "sent" else "server")
    sent = [e for side, e in traced if side == "sent"]
    received = [e for side, e in traced if side == "received"]
    updates = [
        e["session"]["tools"] for e in sent if e["type"] == "session.update" and "tools" in e["session"]
    ]
    assert updates and updates[-1] == [
        {"type": "function", "name": "add", "description": "Add two integers.", "parameters": SCHEMA}
    ]
    (done,) = [e for e in received if e["type"] == "response.function_call_arguments.done"]
    assert (done["name"], json.loads(done["arguments"])) == ("add", {"a": 20, "b": 22})
    first_done = next(e for e in received if e["type"] == "response.done")
    assert [o["type"] for o in first_done["response"]["output"]] == ["message", "function_call"]
    items = [e["item"] for e in sent if e["type"] == "conversation.item.create"]
    (output,) = [i for i in items if i["type"] == "function_call_output"]
    assert output == {"type": "function_call_output", "call_id": done["call_id"], "output": "42"}
    creates = [e for e in sent if e["type"] == "response.create"]
    assert [c["response"]["metadata"]["turn_id"] for c in creates] == [str(turn_id)] * 2  # the same turn
    (call,) = [e for e in seen if isinstance(e, ToolCallRequested)]
    (result,) = [e for e in seen if isinstance(e, ToolCallFinished)]
    assert call.call_id == result.call_id == done["call_id"] and result.result == "42" and result.ok
    (finished,) = [e for e in seen if isinstance(e, TurnFinished)]
    assert finished.turn_id == turn_id
    assert any(isinstance(e, TextDelta) for e in seen[seen.index(result) :])  # the reply went on
