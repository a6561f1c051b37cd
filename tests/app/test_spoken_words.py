"""The user's words of a spoken turn, as the user meets them (issue 16): a sentence spoken into the
virtual microphone comes back transcribed, in the window's transcript, in the journal file and in
the export, in place of "(spoken)"; with `[conversation] transcribe = false` in config.toml,
"(spoken)" stays everywhere and the engine runs no transcription, until the settings dialog turns it
on again (saved in the file, the user's comment kept). The whole app on the demo model
(random weights: its "words" are whatever it decodes, which is why they are read from its report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from app import config as cfg
from app import settings_flow
from app.desk import Desk
from app.history_log import DATA_DIR_ENV, read_history
from app.journal import list_conversations, load_conversation, search
from app.launch import Launch
from bench.rig.pulse import MIC, MIC_FEED, SINK_RATE_HZ, SPEAKER, Feeder
from bench.rig.signals import speech
from events import TurnFinished, UserTranscript
from tests.app.helpers import FAST, engine_of

pytestmark = [pytest.mark.audio, pytest.mark.slow, pytest.mark.timeout(300)]
DEVICES = f'[audio]\ninput_device = "{MIC}"\noutput_device = "{SPEAKER}"\n'


def start_desk(qtbot: Any, demo: Any, tmp_path: Path, settings: str, monkeypatch: pytest.MonkeyPatch) -> Desk:
    """The app on the virtual devices, with `settings` as the user's config.toml."""
    monkeypatch.setenv(cfg.CONFIG_DIR_ENV, str(tmp_path / "config"))
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    path = tmp_path / "config" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(settings + DEVICES)
    loaded = cfg.load(path)
    assert loaded.error is None, loaded.message
    desk = Desk(Launch(loaded, demo=True), loader=lambda source, **kw: demo, engine_options=FAST)
    qtbot.addWidget(desk.window)
    desk.start()
    qtbot.waitUntil(lambda: desk.session.model_info is not None, timeout=60_000)
    qtbot.waitUntil(lambda: desk.window.input_box.isEnabled(), timeout=30_000)
    return desk


def speak_a_turn(qtbot: Any, desk: Desk) -> tuple[int, list[UserTranscript]]:
    """A sentence into the microphone; returns the turn it became once its reply finished, and the
    transcripts the session reported."""
    finished: list[int] = []
    words: list[UserTranscript] = []

    def seen(event: object) -> None:
        if isinstance(event, TurnFinished):
            finished.append(event.turn_id)
        elif isinstance(event, UserTranscript):
            words.append(event)

    desk.session.reported.connect(seen)
    feeder = Feeder(MIC_FEED)
    try:
        feeder.play(speech("Hello there, how are you today?", SINK_RATE_HZ), wait=True)
        qtbot.waitUntil(lambda: bool(finished), timeout=120_000)
    finally:
        feeder.close()
    return finished[0], words


def exported(qtbot: Any, desk: Desk, folder: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Export (Ctrl+E) into `folder`, picked in the folder dialog; the markdown written."""
    folder.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *_a, **_k: str(folder)))
    desk.window.export_requested.emit()
    qtbot.waitUntil(lambda: any(folder.glob("*.md")), timeout=10_000)
    (markdown,) = folder.glob("*.md")
    return markdown.read_text()


def user_lines(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("**You**")]


def test_the_words_of_a_spoken_turn_replace_spoken_in_window_journal_and_export(
    qtbot: Any, demo: Any, virtual_audio: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = start_desk(qtbot, demo, tmp_path, "", monkeypatch)
    try:
        turn_id, transcripts = speak_a_turn(qtbot, desk)
        assert [t.turn_id for t in transcripts] == [turn_id]
        words = transcripts[0].text
        assert words.strip() and engine_of(desk.engine).last_transcribe_s > 0

        (user,) = [e for e in desk.window.transcript.entries if e.role == "user"]
        assert user.text == words and user.duration_s > 0
        shown = desk.window.transcript.plain_text()
        assert words in shown and "(spoken)" not in shown

        desk.history_log.flush()
        records = read_history(desk.history_log.path)
        assert {"kind": "transcript", "turn_id": turn_id, "text": words}.items() <= next(
            r for r in records if r["kind"] == "transcript"
        ).items()
        (info,) = list_conversations(desk.history_log.path.parent).conversations
        assert load_conversation(info).turns[0].user_text == words  # as the past conversations list it
        assert search([info], words.split()[0]) == [info]

        (line,) = user_lines(exported(qtbot, desk, tmp_path / "export", monkeypatch))
        assert line.endswith(f"of speech): {words}") and "(spoken)" not in line
    finally:
        desk.window.close()
    assert desk.closed_cleanly


def test_turned_off_in_the_file_spoken_stays_and_nothing_is_transcribed_until_the_dialog_turns_it_on(
    qtbot: Any, demo: Any, virtual_audio: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = start_desk(qtbot, demo, tmp_path, "[conversation]\ntranscribe = false  # mine\n", monkeypatch)
    try:
        _, transcripts = speak_a_turn(qtbot, desk)
        assert transcripts == [] and engine_of(desk.engine).last_transcribe_s is None
        (user,) = [e for e in desk.window.transcript.entries if e.role == "user"]
        assert user.text == "" and "(spoken)" in desk.window.transcript.plain_text()
        desk.history_log.flush()
        assert not [r for r in read_history(desk.history_log.path) if r["kind"] == "transcript"]
        (info,) = list_conversations(desk.history_log.path.parent).conversations
        assert load_conversation(info).turns[0].user_text == "(spoken)"
        (line,) = user_lines(exported(qtbot, desk, tmp_path / "export", monkeypatch))
        assert line.endswith("of speech): (spoken)")

        # turned on again in the settings dialog: saved, applied by the reload, the next turn's words come
        before = engine_of(desk.engine)
        dialog = settings_flow.open_settings(desk)
        assert not dialog.words_box.isChecked()
        qtbot.mouseClick(dialog.words_box, Qt.MouseButton.LeftButton)
        dialog.apply_button.click()
        qtbot.waitUntil(lambda: engine_of(desk.engine) not in (None, before), timeout=60_000)
        qtbot.waitUntil(lambda: desk.window.input_box.isEnabled(), timeout=30_000)
        turn_id, transcripts = speak_a_turn(qtbot, desk)
        assert [t.turn_id for t in transcripts] == [turn_id] and transcripts[0].text.strip()
        (user,) = [e for e in desk.window.transcript.entries if e.role == "user" and e.turn_id == turn_id]
        assert user.text == transcripts[0].text
    finally:
        desk.window.close()
    assert desk.closed_cleanly
    assert "transcribe = true  # mine" in (tmp_path / "config" / "config.toml").read_text()
