"""Tools as the user has them: the session, the engine on its thread (demo model, its call forced),
the app's tool flow and a real MCP stdio server (tests/tools/mcp_test_server.py) as a subprocess.
A call reaches the server with its arguments, the result goes back and the reply goes on in the
same turn; each bad case says what happened and the conversation goes on."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.engine_worker import EngineThread, EngineWorker, LoadRequest
from app.session import Session
from app.tool_config import McpServerSettings, ToolSettings
from app.tool_flow import ToolFlow
from events import (
    Problem,
    TextDelta,
    ToolCallFinished,
    ToolCallRequested,
    ToolCallStarted,
    ToolConfirmationNeeded,
    TurnFinished,
)
from tests.app.helpers import SHORT_PROMPT
from tests.tools.forcing import force_reply

SERVER = Path(__file__).with_name("mcp_test_server.py")
OPTIONS = {"max_text_tokens": 90, "max_codec_frames": 6, "first_chunk_frames": 1, "chunk_frames": 2}


def call(name: str, arguments: dict[str, Any]) -> str:
    body = json.dumps({"name": name, "arguments": arguments})
    return f"<tool_call>\n{body}\n</tool_call><|im_end|>"


class Rig:
    def __init__(self, session: Session, flow: ToolFlow, log: Path) -> None:
        self.session, self.flow, self.log = session, flow, log
        self.seen: list[object] = []
        session.reported.connect(self.seen.append)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.seen if isinstance(e, kind)]

    def server_calls(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def turn(self, qtbot: Any, monkeypatch: pytest.MonkeyPatch, script: str) -> int:
        """Send a message whose reply is `script` (a call), and wait until the whole turn is over."""
        worker = self.session.engine.worker  # type: ignore[attr-defined]
        force_reply(monkeypatch, worker.engine.tokenizer, script)
        finished = len(self.of(TurnFinished))
        turn_id = self.session.send_text("please")
        assert turn_id is not None
        qtbot.waitUntil(lambda: len(self.of(TurnFinished)) > finished, timeout=60_000)
        return turn_id


@pytest.fixture
def rig(qtbot: Any, demo: Any, tmp_path: Path) -> Iterator[Rig]:
    log = tmp_path / "calls.jsonl"
    servers = (
        McpServerSettings("test", sys.executable, (str(SERVER),), {"OMNIDESK_TEST_MCP_LOG": str(log)}),
        McpServerSettings("missing", str(tmp_path / "no-such-mcp-server")),
    )
    engine = EngineThread(EngineWorker(None, loader=lambda source, **kw: demo))
    flow = ToolFlow(engine, ToolSettings(timeout_s=3.0), servers, builtins=[])
    session = Session(engine, tools=flow)
    rig = Rig(session, flow, log)
    session.load(LoadRequest("demo", system_prompt=SHORT_PROMPT, engine_options=OPTIONS))
    flow.start()
    qtbot.waitUntil(lambda: session.model_info is not None and "add" in flow.catalog(), timeout=60_000)
    qtbot.waitUntil(lambda: "add" in [t.name for t in engine.worker.engine.settings.tools], timeout=10_000)
    yield rig
    flow.close()
    assert session.close()


def test_an_mcp_call_reaches_the_server_and_the_reply_goes_on(qtbot: Any, monkeypatch: Any, rig: Rig) -> None:
    turn_id = rig.turn(qtbot, monkeypatch, call("add", {"a": 2, "b": 3}))
    assert rig.server_calls() == [{"tool": "add", "arguments": {"a": 2, "b": 3}}]
    (finished,) = rig.of(ToolCallFinished)
    assert (finished.turn_id, finished.name, finished.result, finished.ok) == (turn_id, "add", "5", True)
    kinds = [
        type(e) for e in rig.seen if isinstance(e, ToolCallRequested | ToolCallStarted | ToolCallFinished)
    ]
    assert kinds == [ToolCallRequested, ToolCallStarted, ToolCallFinished]
    (done,) = rig.of(TurnFinished)  # one turn: the reply that called is not reported as finished
    assert done.turn_id == turn_id and done.stats.tool_calls == 0
    after = rig.seen.index(finished)
    assert any(isinstance(e, TextDelta) and e.turn_id == turn_id for e in rig.seen[after:])  # it went on
    history = rig.session.engine.history()
    assert "<tool_response>\n5\n</tool_response>" in history[2].text and history[-1].role == "assistant"
    (missing,) = [p.message for p in rig.of(Problem) if "'missing'" in p.message]
    assert "[mcp.missing] in config.toml) would not start" in missing  # the other server works


def test_each_bad_case_is_told_and_the_conversation_goes_on(qtbot: Any, monkeypatch: Any, rig: Rig) -> None:
    rig.turn(qtbot, monkeypatch, "<tool_call>\n{add 2 3}\n</tool_call><|im_end|>")
    rig.turn(qtbot, monkeypatch, call("teleport", {"to": "mars"}))
    rig.turn(qtbot, monkeypatch, call("broken", {}))
    rig.flow.settings = ToolSettings(timeout_s=1.0)
    rig.turn(qtbot, monkeypatch, call("slow", {"seconds": 20}))
    monkeypatch.setattr(rig.flow, "report", _answering(rig, allowed=False))
    rig.turn(qtbot, monkeypatch, call("write_note", {"text": "buy milk"}))
    outcomes = [(f.name, f.ok, f.message, f.result) for f in rig.of(ToolCallFinished)]
    messages = [m for _, _, m, _ in outcomes]
    assert [ok for _, ok, _, _ in outcomes] == [False] * 5
    assert messages[0] == "The assistant's tool call was not valid JSON ('{add 2 3}'); it was told so."
    assert messages[1].startswith(
        "The assistant asked for a tool that does not exist: 'teleport' (tools: add,"
    )
    assert "failed: Error executing tool broken" in messages[2]
    assert (
        messages[3]
        == "The tool 'slow' (MCP server 'test') did not answer within 1 s; the assistant was told."
    )
    assert messages[4] == "You declined write_note: it did not run, and the assistant was told."
    (asked,) = rig.of(ToolConfirmationNeeded)
    assert asked.question.startswith(
        'Let the assistant run write_note (MCP server \'test\') with {"text": "buy milk"}'
    )
    assert [c["tool"] for c in rig.server_calls()] == ["broken", "slow"]  # the refused one never ran
    told = "\n".join(m.text for m in rig.session.engine.history() if "<tool_response>" in m.text)
    for result in [r for _, _, _, r in outcomes]:
        assert f"<tool_response>\n{result}\n</tool_response>" in told  # the model was told each time
    assert len(rig.of(TurnFinished)) == 5 and not rig.of(Problem)[1:]


def _answering(rig: Rig, *, allowed: bool) -> Any:
    """The flow's report, answering each confirmation as the user would in the window."""
    report = rig.flow.report

    def answer(event: object) -> None:
        report(event)
        if isinstance(event, ToolConfirmationNeeded):
            rig.flow.answer(event.call_id, allowed)

    return answer


def test_interrupting_a_turn_that_waits_for_a_yes_withdraws_the_question(
    qtbot: Any, monkeypatch: Any, rig: Rig
) -> None:
    worker = rig.session.engine.worker  # type: ignore[attr-defined]
    force_reply(monkeypatch, worker.engine.tokenizer, call("write_note", {"text": "later"}))
    rig.session.send_text("note that")
    qtbot.waitUntil(lambda: bool(rig.of(ToolConfirmationNeeded)), timeout=60_000)
    rig.session.stop_speaking()
    (withdrawn,) = rig.of(ToolCallFinished)
    assert not withdrawn.ok and withdrawn.message == "Interrupted before you answered: it did not run."
    rig.flow.answer(withdrawn.call_id, True)  # a late Yes runs nothing
    assert rig.turn(qtbot, monkeypatch, "Fine.<|im_end|>") == 2  # the conversation goes on
    assert rig.server_calls() == [] and len(rig.of(ToolCallFinished)) == 1
    engine = worker.engine
    seen = engine.tokenizer.decode(engine.context.all_ids())  # the call stays, answered as cancelled
    answered = (
        '{"text": "later"}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n'
        "Cancelled: the user interrupted the reply before allowing this tool; it did not run.\n"
        "</tool_response><|im_end|>\n<|im_start|>assistant\n<|im_end|>\n<|im_start|>user\nplease<|im_end|>"
    )
    assert answered in seen
