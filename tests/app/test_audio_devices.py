"""The whole app on virtual devices, in process: devices listed, and the speaker changed mid-session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app import config as cfg
from app.desk import Desk
from app.history_log import DATA_DIR_ENV
from app.launch import Launch
from bench.rig.pulse import MIC, MIC_FEED, SPEAKER, Recorder, VirtualAudio
from tests.app.helpers import FAST

pytestmark = [pytest.mark.audio, pytest.mark.slow]


def test_the_speaker_can_change_while_the_app_runs(
    qtbot: Any, demo: Any, virtual_audio: VirtualAudio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cfg.CONFIG_DIR_ENV, str(tmp_path / "config"))
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    config = cfg.with_changes(cfg.Config(), audio={"input_device": MIC, "output_device": SPEAKER})
    launch = Launch(cfg.LoadedConfig(config, tmp_path / "config" / "config.toml"), demo=True)
    options = {**FAST, "max_codec_frames": 12}
    desk = Desk(
        launch, loader=lambda source, **kw: demo, demo_dir=lambda: Path("demo"), engine_options=options
    )
    qtbot.addWidget(desk.window)
    desk.start()
    window = desk.window
    qtbot.waitUntil(lambda: window.output_box.findData(MIC_FEED) >= 0, timeout=30_000)  # devices listed
    qtbot.waitUntil(lambda: desk.session.model_info is not None, timeout=60_000)
    info = desk.session.model_info
    assert info is not None and info.can_speak and window.input_box.currentData() == MIC
    old_player = desk.player.player
    index = window.output_box.findData(MIC_FEED)
    window.output_box.setCurrentIndex(index)
    window.output_box.activated.emit(index)
    qtbot.waitUntil(lambda: desk.player.player is not old_player, timeout=30_000)
    listener = Recorder(MIC)  # what the new "speaker" (the microphone's sink) plays
    try:
        desk.session.send_text("hello")
        qtbot.waitUntil(lambda: len(desk.engine.history()) == 2, timeout=60_000)
        qtbot.waitUntil(lambda: np.abs(listener.samples()).max(initial=0.0) > 1e-3, timeout=30_000)
    finally:
        listener.close()
        window.close()
    assert desk.closed_cleanly
