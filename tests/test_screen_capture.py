"""The screen under Xvfb: a window with a known pattern is listed by its title and captured pixel
for pixel, alone or as part of the whole screen, on the capture thread the camera uses; a resized
window keeps the sharing's frame size; a closed window ends its capture; a Wayland session without
X11 is refused in words; a turn whose source changes size mid-turn keeps one size of frames."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from app.camera import Camera, CameraConfig, CameraFrame
from app.screen_capture import (
    WAYLAND_PROBLEM,
    WHOLE_SCREEN,
    ScreenCaptureError,
    ScreenGrabber,
    ScreenReader,
    ScreenTarget,
    WindowGone,
    capture_problem,
    grab,
    list_windows,
)
from app.turn_video import LiveClip, spoken_turn
from model.media_input import MODEL_AUDIO_RATE_HZ
from tests.app.test_e2e import display
from tests.screen_pattern import FIRST, SECOND, PatternWindow, shows

__all__ = ["display"]  # the Xvfb fixture


@pytest.fixture
def on_display(display: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DISPLAY", display)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    return display


def test_a_window_is_listed_by_title_and_captured_pixel_for_pixel(on_display: str) -> None:
    with PatternWindow("Known pattern", x=200, y=100) as pattern:
        listed = [w for w in list_windows() if w.title == "Known pattern"]
        assert listed == [ScreenTarget(pattern.window_id, "Known pattern")]
        window = grab(listed[0])
        assert window.shape == (240, 320, 3) and window.dtype.name == "uint8"
        assert shows(window, FIRST, tolerance=0)
        screen = grab(WHOLE_SCREEN)
        assert screen.shape == (800, 1280, 3)
        assert shows(screen[100:340, 200:520], FIRST, tolerance=0)
        by_title = grab(ScreenTarget.from_setting("window:Known pattern"))  # a remembered choice
        assert shows(by_title, FIRST, tolerance=0)
        pattern.show(SECOND)
        assert shows(grab(listed[0]), SECOND, tolerance=0)


def test_a_covered_window_is_captured_from_its_own_pixels(
    on_display: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with PatternWindow("Covered pattern", x=100, y=100) as pattern, PatternWindow("Cover", 150, 130) as cover:
        cover.show(SECOND)
        covered = grab(ScreenTarget(pattern.window_id, pattern.title))
        assert shows(covered, FIRST, tolerance=0)  # the Composite extension: what covers it is not seen
        screen = grab(WHOLE_SCREEN)[100:340, 100:420]
        assert not shows(screen, FIRST)  # on the screen, the other window covers most of it
        monkeypatch.setattr(ScreenGrabber, "_own_pixels", lambda *_args: None)  # no Composite extension
        assert np.array_equal(grab(ScreenTarget(pattern.window_id, pattern.title)), screen)


def test_the_capture_thread_stores_the_window_and_stops_when_it_closes(on_display: str) -> None:
    pattern = PatternWindow("Closing pattern")
    target = ScreenTarget(pattern.window_id, pattern.title)
    events: list[Any] = []
    config = CameraConfig(source=target.label, fps=8.0, store_fps=8.0)
    camera = Camera(config, events.append, open_reader=lambda: ScreenReader(target, 8.0), kind="screen")
    with camera:
        deadline = time.monotonic() + 20
        while len(camera.frames_between(-1e9, 1e9)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        stored = camera.frames_between(-1e9, 1e9)
        assert len(stored) >= 3 and all(shows(f.rgb, FIRST) for f in stored)
        assert [f.time_s for f in stored] == sorted(f.time_s for f in stored)
        pattern.close()
        while camera.status != "ended" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert camera.status == "ended" and camera.message == "the shared window was closed"
    assert events == []  # a closed window is no device outage: sharing it stops (app.screen_share)
    with pytest.raises(WindowGone, match="'Closing pattern' was closed"):
        grab(target)


def test_a_wayland_session_without_x11_is_refused_in_words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert capture_problem() == WAYLAND_PROBLEM
    with pytest.raises(ScreenCaptureError, match="needs an X11 session"):
        grab()
    assert list_windows() == []
    monkeypatch.delenv("WAYLAND_DISPLAY")
    monkeypatch.delenv("XDG_SESSION_TYPE", raising=False)
    assert "DISPLAY is not set" in capture_problem()


def test_a_resized_window_keeps_the_size_its_sharing_started_with(on_display: str) -> None:
    with PatternWindow("Resized pattern", width=320, height=240) as pattern:
        reader = ScreenReader(ScreenTarget(pattern.window_id, pattern.title), 4.0)
        try:
            assert reader.read().shape == (240, 320, 3)
            pattern.resize(480, 200)
            assert grab(reader.target).shape == (200, 480, 3)
            assert reader.read().shape == (240, 320, 3)  # scaled to the sharing's size
        finally:
            reader.close()


class SwitchedSource:
    """Frames at 4 fps whose size changes at `switch_s` (the camera, then a shared screen)."""

    def __init__(self, switch_s: float) -> None:
        self.frames = [
            CameraFrame(np.zeros((240, 320, 3) if t < switch_s else (192, 352, 3), np.uint8), t, i)
            for i, t in enumerate(np.arange(8.0, 14.0, 0.25))
        ]

    def frames_between(self, start_s: float, end_s: float) -> list[CameraFrame]:
        return [f for f in self.frames if start_s <= f.time_s <= end_s]


def test_a_source_switched_mid_turn_gives_one_size_of_frames_and_an_audio_only_turn() -> None:
    source = SwitchedSource(switch_s=11.6)  # the turn is spoken from 10 s to 13 s
    audio = np.zeros(3 * MODEL_AUDIO_RATE_HZ, np.int16)
    _audio, frames = LiveClip(source, 10.0).add(audio)
    assert frames and {f.shape for f in frames} == {(240, 320, 3)}
    assert len(frames) == 3  # the ticks before the switch (1 fps, still: 9.5, 10.5, 11.5)
    turn = spoken_turn(audio, 10.0, source)()
    assert turn.video is None and turn.audio.size == audio.size
