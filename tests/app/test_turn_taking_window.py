"""Turn-taking in the window (issue 12): the responsiveness setting reaches the microphone chain and
the config, and a turn the end-of-turn model ended at a pause is marked in the transcript and the
journal."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from app import config as cfg
from app.desk import Desk
from app.history_log import read_history
from app.launch import Launch
from events import SpeechEnded, SpeechStarted
from tests.app.helpers import FAST, FakePlayer, ScriptedInput
from tests.app.test_window import config_dir

__all__ = ["config_dir"]  # the fixture


class TunableInput(ScriptedInput):
    """The recorded input, with the chain's responsiveness knob."""

    def __init__(self) -> None:
        super().__init__()
        self.responsiveness = ""

    def set_responsiveness(self, responsiveness: str) -> None:
        self.responsiveness = responsiveness


def test_responsiveness_is_set_in_the_window_and_early_ends_are_marked(
    qtbot: Any, demo: Any, config_dir: Path
) -> None:
    path = config_dir / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text("# mine\n[audio]\nresponsiveness = 'eager'\n")
    loaded = cfg.load(path)
    audio = TunableInput()
    desk = Desk(
        Launch(loaded, demo=True, file_config=loaded.config),
        loader=lambda source, **kw: demo,
        audio=lambda settings, on_event: (audio, FakePlayer()),
        engine_options=FAST,
    )
    qtbot.addWidget(desk.window)
    desk.start()
    window = desk.window
    assert window.responsiveness_box.currentData() == "eager"
    qtbot.waitUntil(
        lambda: desk.session.model_info is not None and audio.on_event is not None, timeout=60_000
    )
    index = window.responsiveness_box.findData("patient")
    window.responsiveness_box.setCurrentIndex(index)
    window.responsiveness_box.activated.emit(index)
    assert audio.responsiveness == "patient"
    start = time.perf_counter() - 1.0
    speech = (8000 * np.sin(np.arange(16_000) / 16_000 * 2 * np.pi * 220)).astype(np.int16)
    audio.post_from_thread(
        SpeechStarted(start),
        SpeechEnded(speech, start_s=start, end_s=start + 1.0, audio_start_s=start, ended_early=True),
    )
    qtbot.waitUntil(lambda: any(e.role == "user" for e in window.transcript.entries), timeout=10_000)
    user = next(e for e in window.transcript.entries if e.role == "user")
    assert user.ended_early
    window.transcript.render_now()
    assert "judged final" in window.transcript.toPlainText()
    desk.history_log.flush()
    records = read_history(desk.history_log.path)
    assert any(r["kind"] == "user" and r.get("ended_early") for r in records)
    window.close()
    assert cfg.load(path).config.audio.responsiveness == "patient"
    assert path.read_text().startswith("# mine\n")
