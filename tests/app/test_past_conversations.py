"""Conversations that last (issue 16), the whole app on the demo model: a conversation of five turns,
the app quit and started again, found in the list by a word of it, reopened, played and continued
(the engine's context holds the old turns); journals cut by a crash or from a newer version listed
without being changed; delete asks first; export writes the files."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMessageBox

from app import config as cfg
from app.desk import Desk
from app.history_log import DATA_DIR_ENV, read_history
from app.launch import Launch
from app.session import State
from events import SpeechEnded, SpeechStarted
from tests.app.helpers import FAST, FakePlayer, FakeSpeaker, ScriptedInput, engine_of

pytestmark = pytest.mark.timeout(400)


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(cfg.CONFIG_DIR_ENV, str(tmp_path / "config"))
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    return tmp_path / "config"


def start_desk(qtbot: Any, demo: Any, config_dir: Path) -> Desk:
    """The app with a scripted microphone and a fake player (the sound devices' edge)."""
    loaded = cfg.load(config_dir / "config.toml")

    def audio(settings: Any, on_event: Any) -> tuple[Any, Any]:
        return ScriptedInput(), FakePlayer()

    desk = Desk(Launch(loaded, demo=True), loader=lambda source, **kw: demo, audio=audio, engine_options=FAST)
    qtbot.addWidget(desk.window)
    desk.start()
    qtbot.waitUntil(lambda: desk.session.state == State.LISTENING, timeout=60_000)
    qtbot.waitUntil(lambda: desk.audio_input.on_event is not None, timeout=10_000)
    return desk


def show_past(desk: Desk) -> Any:
    """The "Past conversations" menu action, as the user opens the list."""
    (action,) = [a for a in desk.window.findChildren(QAction) if a.shortcut().toString() == "Ctrl+H"]
    action.trigger()
    assert desk.window.conversations_dock.isVisible()
    return desk.past_conversations


def quit_desk(desk: Desk) -> None:
    desk.window.close()
    assert desk.closed_cleanly


def speak(desk: Desk, seconds: float) -> None:
    now = time.perf_counter()
    start = now - seconds
    pcm = (6000 * np.sin(2 * np.pi * 220 * np.arange(int(16_000 * seconds)) / 16_000)).astype(np.int16)
    desk.audio_input.post_from_thread(
        SpeechStarted(start), SpeechEnded(pcm, start_s=start, end_s=now, audio_start_s=start)
    )


def answered(desk: Desk, turns: int) -> bool:
    """The reply to turn `turns` is complete and has played out (the fake player drained)."""
    if len(desk.engine.history()) != 2 * turns:
        return False
    desk.player.drain()
    return desk.session.state == State.LISTENING


def journals(data: Path) -> list[Path]:
    return sorted((data / "conversations").glob("*.jsonl"))


def test_a_conversation_is_found_reopened_and_continued_after_a_restart(
    qtbot: Any, demo: Any, config_dir: Path, tmp_path: Path
) -> None:
    desk = start_desk(qtbot, demo, config_dir)
    for turn in range(5):
        if turn in (1, 3):
            desk.send_text(f"a question about {['', 'pelicans', '', 'quinces'][turn]}")
        else:
            speak(desk, 1.0)
        qtbot.waitUntil(lambda turn=turn: answered(desk, turn + 1), timeout=120_000)
    first_run = desk.engine.history()
    first_run_length = engine_of(desk.engine).context.length
    quit_desk(desk)

    desk = start_desk(qtbot, demo, config_dir)
    past = show_past(desk)
    widget = past.widget
    assert len(widget.keys()) == 1 and "5 turns" in widget.list.item(0).text()
    qtbot.keyClicks(widget.search_box, "Quinces")
    (key,) = widget.keys()
    widget.search_box.clear()
    qtbot.keyClicks(widget.search_box, "walrus")
    assert widget.keys() == [] and widget.empty_label.isVisible()
    widget.search_box.clear()
    widget.select(key)
    qtbot.mouseClick(widget.open_button, Qt.MouseButton.LeftButton)
    shown = widget.reader.toPlainText()
    assert "a question about pelicans" in shown and shown.count("You (1.0 s): ") == 3  # spoken turns
    assert first_run[1].text.strip()[:12] in shown

    played = FakeSpeaker()
    past.output = lambda: played  # the speaker's edge
    qtbot.mouseClick(widget.play_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.stop_button.isEnabled(), timeout=20_000)
    assert sum(c.pcm.size for c in played.chunks) > 3 * 24_000  # three spoken turns and the replies
    assert played.finished == [1] and not desk.session.muted  # the microphone is back on

    engine = engine_of(desk.engine)
    fresh_length = engine.context.length
    qtbot.mouseClick(widget.continue_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(engine.history) == 10, timeout=60_000)
    assert [(m.role, m.text) for m in engine.history if m.role == "assistant"] == [
        (m.role, m.text) for m in first_run if m.role == "assistant"
    ]
    assert [m.audio_s for m in engine.history if m.role == "user"] == [1.0, 0.0, 1.0, 0.0, 1.0]
    restored_length = engine.context.length
    assert fresh_length == 0 and restored_length >= 0.9 * first_run_length  # the whole conversation
    assert "Continuing the conversation" in desk.window.transcript.plain_text()
    desk.send_text("and what came first?")
    qtbot.waitUntil(lambda: answered(desk, 6), timeout=120_000)
    assert engine.history[10].text == "and what came first?"
    desk.history_log.flush()
    records = read_history(desk.history_log.path)
    (reply,) = [r for r in records if r["kind"] == "assistant" and not r.get("restored")]
    assert reply["context_tokens"] > restored_length  # the new reply's prompt held the old turns
    assert sum(1 for r in records if r["kind"] == "user" and r.get("restored")) == 5
    assert sum(1 for r in records if r["kind"] == "media" and r["role"] == "user") == 3
    quit_desk(desk)


def test_damaged_and_newer_journals_are_listed_unchanged_delete_asks_and_export_writes(
    qtbot: Any, demo: Any, config_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "data" / "conversations"
    folder.mkdir(parents=True)
    user = {
        "kind": "user",
        "time": 1_700_000_000.0,
        "turn_id": 1,
        "text": "hello from the past",
        "audio_s": 0,
    }
    reply = {
        "kind": "assistant",
        "time": 1_700_000_005.0,
        "turn_id": 1,
        "text": "greetings",
        "interrupted": False,
    }
    header = {"kind": "journal", "format": 2, "time": 1_700_000_000.0}
    cut = folder / "20231114-221320.jsonl"
    cut.write_bytes(
        ("\n".join(json.dumps(r) for r in (header, user, reply)) + '\n{"kind": "user", "tim').encode()
    )
    newer = folder / "20231115-090000.jsonl"
    newer_lines = [{**header, "format": 9}, {**user, "text": "words of tomorrow"}, {"kind": "aura", "x": 1}]
    newer.write_bytes(("\n".join(json.dumps(r) for r in newer_lines) + "\n").encode())
    before = {p: p.read_bytes() for p in (cut, newer)}

    desk = start_desk(qtbot, demo, config_dir)
    past = show_past(desk)
    widget = past.widget
    assert len(widget.keys()) == 2
    problems = widget.problems_label.text()
    assert widget.problems_label.isVisible()
    assert f"{cut.name}: its last line is cut off" in problems
    assert f"{newer.name} was written by a newer Omni Desk (journal format 9" in problems
    newer_key, cut_key = widget.keys()
    past.open(newer_key)
    assert "words of tomorrow" in widget.reader.toPlainText() and not widget.continue_button.isEnabled()
    past.open(cut_key)
    assert "hello from the past" in widget.reader.toPlainText() and widget.continue_button.isEnabled()
    assert {p: p.read_bytes() for p in (cut, newer)} == before  # nothing overwritten

    exported = past.export(cut_key, tmp_path / "out")
    text = exported.markdown.read_text()
    assert "**You**: hello from the past" in text and "**Assistant**: greetings" in text

    qtbot.mouseClick(widget.delete_button, Qt.MouseButton.LeftButton)
    box = widget.confirmation
    assert box is not None and box.isVisible() and cut.name in box.text() and cut.exists()
    box.button(QMessageBox.StandardButton.Cancel).click()
    qtbot.waitUntil(lambda: widget.confirmation is None)
    assert cut.exists() and len(widget.keys()) == 2
    qtbot.mouseClick(widget.delete_button, Qt.MouseButton.LeftButton)
    assert widget.confirmation is not None
    (delete,) = [b for b in widget.confirmation.buttons() if b.text() == "Delete"]
    delete.click()
    qtbot.waitUntil(lambda: not cut.exists())
    assert widget.keys() == [newer_key] and newer.read_bytes() == before[newer]
    quit_desk(desk)
