"""Tools in the window: an MCP server from config.toml, a tool that acts asks in the window first,
the call is a collapsed transcript entry that opens on a click, and the journal keeps it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtWidgets import QPushButton

from app.history_log import read_history
from events import TurnFinished
from tests.app.test_window import make_desk
from tests.tools.forcing import force_reply


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from app import config as cfg
    from app.history_log import DATA_DIR_ENV

    monkeypatch.setenv(cfg.CONFIG_DIR_ENV, str(tmp_path / "config"))
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    return tmp_path / "config"


SERVER = Path(__file__).with_name("mcp_test_server.py")
CALL = '<tool_call>\n{"name": "write_note", "arguments": {"text": "buy milk"}}\n</tool_call><|im_end|>'


def test_an_acting_tool_asks_in_the_window_and_shows_in_the_transcript(
    qtbot: Any,
    demo: Any,
    config_dir: Path,
    tmp_path: Path,
    monkeypatch: Any,
) -> None:
    log = tmp_path / "calls.jsonl"
    text = f"[mcp.notes]\ncommand = {json.dumps(sys.executable)}\nargs = [{json.dumps(str(SERVER))}]\n"
    text += f"env = {{ OMNIDESK_TEST_MCP_LOG = {json.dumps(str(log))} }}\n"
    desk = make_desk(qtbot, demo, config_dir, text=text)
    qtbot.waitUntil(
        lambda: desk.session.model_info is not None and "write_note" in desk.tools.catalog(), timeout=60_000
    )
    names = lambda: [t.name for t in desk.engine.worker.engine.settings.tools]  # type: ignore[attr-defined]  # noqa: E731
    qtbot.waitUntil(lambda: "write_note" in names(), timeout=10_000)
    assert {"date_time", "clipboard_text", "screenshot", "add"} <= set(names())
    desk.engine.worker.engine.configure(max_text_tokens=90)  # type: ignore[attr-defined]
    force_reply(monkeypatch, desk.engine.worker.engine.tokenizer, CALL)  # type: ignore[attr-defined]
    finished: list[object] = []
    desk.session.reported.connect(lambda e: finished.append(e) if isinstance(e, TurnFinished) else None)
    desk.send_text("remember to buy milk")
    prompt = desk.window.tool_prompt
    qtbot.waitUntil(lambda: bool(prompt.pending()), timeout=60_000)
    assert prompt.isVisible() and "write_note (MCP server 'notes')" in prompt.questions()[0]
    assert not log.exists()  # nothing ran before the user said yes
    entry = next(e for e in desk.window.transcript.entries if e.role == "tool")
    assert entry.state == "asking"
    yes = next(b for b in prompt.findChildren(QPushButton) if b.text() == "Yes")
    qtbot.mouseClick(yes, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(finished), timeout=60_000)
    assert [json.loads(line) for line in log.read_text().splitlines()] == [
        {"tool": "write_note", "arguments": {"text": "buy milk"}}
    ]
    assert not prompt.isVisible() and entry.state == "done" and entry.result == "noted"
    shown = desk.window.transcript.plain_text()
    assert "Tool write_note: done" in shown and '"text": "buy milk"' not in shown  # collapsed
    desk.window.transcript.anchorClicked.emit(QUrl(f"tool:{entry.call_id}"))
    shown = desk.window.transcript.plain_text()
    assert 'arguments: {"text": "buy milk"}' in shown and "result: noted" in shown
    assert shown.index("Tool write_note") < shown.rindex("Assistant:")  # the reply went on below the call
    desk.history_log.flush()
    records = [r for r in read_history(desk.history_log.path) if r.get("kind") == "tool_call"]
    assert [(r["name"], r["arguments"], r["result"], r["ok"]) for r in records] == [
        ("write_note", '{"text": "buy milk"}', "noted", True)
    ]
    desk.window.close()
    assert desk.closed_cleanly
