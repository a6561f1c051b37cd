"""Screen sharing in the app under Xvfb (issue 15): the user picks a window with a known pattern and
shares it; the spoken turn's frames carry that pattern (pixel check), before and after it changes,
at the clip's ticks on the turn's audio clock as camera frames are; the live prefill picks the same
frames; turning sharing off stops the frames and the indicator; nothing of the screen is kept in
the journal; a closed window ends sharing with a message; Wayland is refused in words."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt

from app.desk import Desk
from app.history_log import conversations_dir
from app.screen_capture import WAYLAND_PROBLEM
from app.turn_video import LiveClip, TurnVideoConfig
from events import ScreenSharingChanged, SpeechEnded, SpeechStarted
from model.media_input import MODEL_AUDIO_RATE_HZ, UserTurn
from tests.app.test_camera_app import config_dir, make_desk, segments_with, tone
from tests.app.test_e2e import display
from tests.screen_pattern import FIRST, SECOND, PatternWindow, shows

__all__ = ["config_dir", "display"]  # fixtures

TITLE = "Shared pattern"
MARGIN_S = 0.4  # a tick this close to the change may show either pattern (capture at 4 fps)


@pytest.fixture
def on_display(display: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DISPLAY", display)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    return display


@pytest.fixture
def desk(qtbot: Any, demo: Any, config_dir: Path, on_display: str) -> Iterator[Desk]:
    desk = make_desk(qtbot, demo, config_dir, "enabled = false\n")
    yield desk
    desk.window.close()
    assert desk.closed_cleanly


def record_turns(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> list[UserTurn]:
    """The turns the session hands the engine client, as the engine link makes them."""
    sent: list[UserTurn] = []
    respond = desk.engine.respond

    def recording(turn_id: int, turn: Any) -> None:
        sent.append(turn() if callable(turn) else turn)
        respond(turn_id, turn)

    monkeypatch.setattr(desk.engine, "respond", recording)
    return sent


def speak(desk: Desk, start_s: float, end_s: float) -> np.ndarray:
    """A turn spoken from `start_s` to `end_s` (perf_counter), as the turn detector reports it."""
    audio = tone(end_s - start_s)
    desk.audio_input.post_from_thread(
        SpeechStarted(start_s), SpeechEnded(audio, start_s=start_s, end_s=end_s, audio_start_s=start_s)
    )
    return audio


def pick_and_share(qtbot: Any, desk: Desk, title: str) -> None:
    view = desk.window.screen_view
    view.targets_wanted.emit()  # the picker opening lists the windows again
    index = view.target_box.findText(f"Window: {title}")
    assert index > 0, [view.target_box.itemText(i) for i in range(view.target_box.count())]
    view.target_box.setCurrentIndex(index)
    view.target_box.activated.emit(index)
    assert not view.sharing  # picking alone shares nothing
    qtbot.mouseClick(view.toggle_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.sharing, timeout=10_000)


def test_a_shared_window_is_what_the_spoken_turn_sees_until_sharing_stops(
    qtbot: Any, desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    reported: list[object] = []
    desk.session.reported.connect(reported.append)
    sent = record_turns(desk, monkeypatch)
    view, feed = desk.window.screen_view, desk.devices.screen.feed
    assert not view.sharing and not view.indicator.isVisible()  # off at the start
    with PatternWindow(TITLE) as pattern:
        pick_and_share(qtbot, desk, TITLE)
        assert TITLE in view.indicator.text() and view.indicator.isVisible()
        assert desk.file_config.screen.target == f"window:{TITLE}"  # remembered, not turned on next time
        qtbot.waitUntil(lambda: len(feed.frames_between(0, 1e12)) >= 12, timeout=20_000)  # 3 s at 4 fps
        changed_s = pattern.show(SECOND)
        qtbot.waitUntil(lambda: feed.frames_between(changed_s + 2.0, 1e12) != [], timeout=20_000)
        start_s, end_s = changed_s - 1.5, time.perf_counter()
        audio = speak(desk, start_s, end_s)
        qtbot.waitUntil(lambda: len(desk.engine.history()) == 2, timeout=90_000)
        turn = sent[0]
        assert turn.video is not None and segments_with(desk.session, "video_grid_thw") == 1
        config = TurnVideoConfig()
        fps, frames = turn.video.fps, turn.video.frames
        clip_start = start_s - config.lead_in_s
        assert turn.audio.size == audio.size + round(config.lead_in_s * MODEL_AUDIO_RATE_HZ)
        heard_until = start_s + audio.size / MODEL_AUDIO_RATE_HZ
        assert len(frames) == int((heard_until - clip_start) * fps + 1e-6) + 1  # a frame at every tick
        ticks = clip_start + np.arange(len(frames)) / fps
        before = [f for f, t in zip(frames, ticks, strict=True) if t < changed_s - MARGIN_S]
        after = [f for f, t in zip(frames, ticks, strict=True) if t > changed_s + MARGIN_S]
        assert len(before) >= 2 and len(after) >= 2
        assert all(shows(f, FIRST) for f in before) and all(shows(f, SECOND) for f in after)
        live = LiveClip(desk.devices.visual, start_s)  # the live prefill's pick: the same frames
        _lead_and_audio, live_frames = live.add(audio)
        assert len(live_frames) >= len(frames) - 1  # the last tick may wait for a later frame
        assert all(np.array_equal(a, b) for a, b in zip(live_frames[:-1], frames, strict=False))

        qtbot.mouseClick(view.toggle_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not view.sharing, timeout=10_000)
        assert not view.indicator.isVisible() and not view.toggle_button.isChecked()
        assert desk.devices.visual.frames_between(0, 1e12) == []
        now = time.perf_counter()
        speak(desk, now - 1.5, now)
        qtbot.waitUntil(lambda: len(desk.engine.history()) == 4, timeout=90_000)
        assert sent[1].video is None  # no frames once sharing is off
    changes = [e for e in reported if isinstance(e, ScreenSharingChanged)]
    assert [(e.on, e.target) for e in changes] == [
        (True, f"the window {TITLE!r}"),
        (False, f"the window {TITLE!r}"),
    ]
    # (a reply's audio is kept once it has played out: it may still be on its way in, as a .wav.tmp)
    kept = [p for p in conversations_dir().rglob("*") if p.is_file() and not p.name.endswith(".wav.tmp")]
    assert any(p.suffix == ".wav" for p in kept)  # the turns' audio is kept ...
    assert not [p for p in kept if p.suffix not in (".jsonl", ".wav")]  # ... and nothing of the screen
    assert TITLE not in "".join(p.read_text() for p in kept if p.suffix == ".jsonl")


def test_closing_the_shared_window_stops_sharing_and_says_so(qtbot: Any, desk: Desk) -> None:
    view = desk.window.screen_view
    pattern = PatternWindow("Closing soon")
    pick_and_share(qtbot, desk, "Closing soon")
    pattern.close()
    qtbot.waitUntil(lambda: not view.sharing, timeout=10_000)
    problems = desk.window.error_banner.text()
    assert "Screen sharing stopped: the shared window was closed." in problems
    assert "Closing soon" not in problems  # problems go to the journal: no window titles there
    assert not view.toggle_button.isChecked() and not desk.devices.screen.on


def test_sharing_on_wayland_without_x11_is_refused_in_words(
    qtbot: Any, desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISPLAY")
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    view = desk.window.screen_view
    qtbot.mouseClick(view.toggle_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: WAYLAND_PROBLEM in desk.window.error_banner.text(), timeout=10_000)
    assert not view.sharing and not view.toggle_button.isChecked() and not desk.devices.screen.on


def test_the_last_pick_is_remembered_but_sharing_is_off_at_the_start(
    qtbot: Any, demo: Any, config_dir: Path, on_display: str
) -> None:
    with PatternWindow(TITLE):
        desk = make_desk(qtbot, demo, config_dir, f'enabled = false\n[screen]\ntarget = "window:{TITLE}"\n')
        try:
            view = desk.window.screen_view
            assert view.target_box.currentText() == f"Window: {TITLE}"
            assert not view.sharing and not view.toggle_button.isChecked() and not desk.devices.screen.on
            assert desk.devices.visual.frames_between(0, 1e12) == []
        finally:
            desk.window.close()
