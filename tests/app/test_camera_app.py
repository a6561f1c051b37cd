"""The camera in the app, on synthetic video files: spoken turns carry the turn's frames, a
missing camera leaves an audio-only conversation, the mirrored preview, the snapshot, and the
pending turn's duration while the user speaks."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt

from app import config as cfg
from app.camera import Camera, CameraConfig
from app.desk import Desk
from app.engine_worker import EngineThread, EngineWorker, LoadRequest
from app.history_log import DATA_DIR_ENV
from app.launch import Launch
from app.session import Session, State
from events import SpeechEnded, SpeechStarted
from tests.app.helpers import FAST, SHORT_PROMPT, FakePlayer, ScriptedInput, engine_of, on_report
from tests.test_camera import write_video

SIZE = (320, 240)


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(16_000 * seconds)) / 16_000
    return (8000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)


def speak(audio: ScriptedInput, seconds: float) -> None:
    """A turn of `seconds` that just ended, as the turn detector reports it."""
    now = time.perf_counter()
    start = now - seconds
    audio.post_from_thread(
        SpeechStarted(start), SpeechEnded(tone(seconds), start_s=start, end_s=now, audio_start_s=start)
    )


def two_colour_video(path: Path, seconds: float = 20.0, fps: int = 10) -> Path:
    """Every frame red on the left half and blue on the right (RGB), to see the mirror."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, SIZE)
    frame = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    frame[:, : SIZE[0] // 2] = (0, 0, 255)  # BGR
    frame[:, SIZE[0] // 2 :] = (255, 0, 0)
    for _ in range(int(seconds * fps)):
        writer.write(frame)
    writer.release()
    return path


def segments_with(session: Session, key: str) -> int:
    return sum(key in s.media for s in engine_of(session.engine).context.segments)


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(cfg.CONFIG_DIR_ENV, str(tmp_path / "config"))
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    return tmp_path / "config"


def make_desk(qtbot: Any, demo: Any, config_dir: Path, camera_toml: str) -> Desk:
    """The app with a scripted microphone, a fake player and `[camera]` set as given."""
    path = config_dir / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[camera]\n" + camera_toml)
    loaded = cfg.load(path)
    assert loaded.error is None

    def audio(settings: Any, on_event: Any) -> tuple[Any, Any]:
        return ScriptedInput(), FakePlayer()

    desk = Desk(Launch(loaded, demo=True), loader=lambda source, **kw: demo, audio=audio, engine_options=FAST)
    qtbot.addWidget(desk.window)
    desk.start()
    qtbot.waitUntil(lambda: desk.session.state == State.LISTENING, timeout=60_000)
    qtbot.waitUntil(lambda: desk.audio_input.on_event is not None, timeout=10_000)  # started off-thread
    return desk


@pytest.fixture
def video_desk(qtbot: Any, demo: Any, config_dir: Path, tmp_path: Path) -> Iterator[Desk]:
    video = two_colour_video(tmp_path / "two-colour.avi")
    desk = make_desk(qtbot, demo, config_dir, f"enabled = true\nsource = {str(video)!r}\n")
    yield desk
    desk.window.close()
    assert desk.closed_cleanly


def test_a_spoken_turn_with_the_camera_running_reaches_the_engine_with_video(
    qtbot: Any, demo: Any, tmp_path: Path
) -> None:
    video = write_video(tmp_path / "camera.avi", seconds=30.0)
    player, audio = FakePlayer(), ScriptedInput()
    camera = Camera(CameraConfig(source=str(video)))
    worker = EngineWorker(player, loader=lambda source, **kw: demo)
    session = Session(EngineThread(worker), audio_input=audio, playback=player, camera=camera)
    finished: list[int] = []
    on_report(session, "reply_finished", lambda turn_id, _stats: finished.append(turn_id))
    session.load(LoadRequest("demo", system_prompt=SHORT_PROMPT, engine_options=FAST))
    session.start_audio()
    with camera:
        qtbot.waitUntil(lambda: session.model_info is not None, timeout=60_000)
        recent = lambda: camera.frames_between(time.perf_counter() - 2.5, 1e12)  # noqa: E731
        qtbot.waitUntil(lambda: len(recent()) >= 8, timeout=20_000)
        speak(audio, 1.5)
        qtbot.waitUntil(lambda: finished == [1], timeout=60_000)
        assert segments_with(session, "video_grid_thw") == 1
        user = worker.history()[0]
        assert user.audio_s == pytest.approx(2.0)  # the clip's half-second lead-in, as silence
    session.camera = None
    speak(audio, 1.5)
    qtbot.waitUntil(lambda: finished == [1, 2], timeout=60_000)
    assert segments_with(session, "video_grid_thw") == 1
    assert worker.history()[2].audio_s == pytest.approx(1.5)
    assert session.close()


def test_a_bad_camera_index_gives_a_message_and_the_spoken_turn_is_answered(
    qtbot: Any, demo: Any, config_dir: Path
) -> None:
    desk = make_desk(qtbot, demo, config_dir, "enabled = true\nsource = 57\n")
    window = desk.window
    qtbot.waitUntil(lambda: "camera '57'" in window.error_banner.text(), timeout=10_000)
    problem = window.error_banner.text()  # it never worked: not "stopped working"
    assert window.error_banner.isVisible() and "cannot be opened" in problem and "stopped" not in problem
    qtbot.waitUntil(lambda: "cannot be opened" in window.camera_view.status_label.text(), timeout=10_000)
    assert window.camera_view.toggle_button.isChecked()
    speak(desk.audio_input, 1.5)
    qtbot.waitUntil(lambda: len(desk.engine.history()) == 2, timeout=60_000)
    assert desk.engine.history()[1].text.strip()
    assert segments_with(desk.session, "video_grid_thw") == 0
    desk.history_log.flush()
    errors = [e for e in desk.history_log.path.read_text().splitlines() if '"error"' in e]
    assert len(errors) == 1  # one message per outage, not one per retry
    desk.window.close()


def test_the_preview_is_mirrored_and_the_toggle_turns_it_off(qtbot: Any, video_desk: Desk) -> None:
    view = video_desk.window.camera_view
    qtbot.waitUntil(lambda: not view.preview.pixmap().isNull(), timeout=20_000)
    image = view.preview.pixmap().toImage()
    left = image.pixelColor(10, image.height() // 2)
    right = image.pixelColor(image.width() - 10, image.height() // 2)
    assert left.blue() > 200 > 60 > left.red()  # the camera's right half (blue) shows on the left
    assert right.red() > 200 > 60 > right.blue()
    assert not view.status_label.text()
    qtbot.mouseClick(view.toggle_button, Qt.MouseButton.LeftButton)
    assert not video_desk.camera.on and view.preview.pixmap().isNull()
    assert video_desk.file_config.camera.enabled is False


def test_a_snapshot_goes_with_the_next_typed_message(qtbot: Any, video_desk: Desk) -> None:
    window, session = video_desk.window, video_desk.session
    qtbot.waitUntil(lambda: video_desk.camera.latest() is not None, timeout=20_000)
    window.snapshot_box.setChecked(True)
    qtbot.keyClicks(window.text_box, "what do you see")
    qtbot.keyClick(window.text_box, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(video_desk.engine.history()) == 2, timeout=60_000)
    assert segments_with(session, "image_grid_thw") == 1 and not window.snapshot_box.isChecked()
    qtbot.keyClicks(window.text_box, "and now")
    qtbot.keyClick(window.text_box, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(video_desk.engine.history()) == 4, timeout=60_000)
    assert segments_with(session, "image_grid_thw") == 1  # only the message it was checked for


def test_the_pending_turn_duration_ticks_while_the_user_speaks(
    qtbot: Any, demo: Any, config_dir: Path
) -> None:
    desk = make_desk(qtbot, demo, config_dir, "enabled = false\n")
    label = desk.window.pending_label
    assert not label.isVisible()
    desk.audio_input.post_from_thread(SpeechStarted(time.perf_counter() - 4.0))
    qtbot.waitUntil(lambda: label.isVisible(), timeout=5_000)

    def seconds() -> float:
        found = re.search(r"listening… (\d+\.\d) s", label.text())
        assert found, label.text()
        return float(found.group(1))

    first = seconds()
    assert first >= 4.0 and "understood as you speak" in label.text()
    qtbot.waitUntil(lambda: seconds() > first, timeout=5_000)
    desk.audio_input.post_from_thread(SpeechEnded(np.zeros(0, np.int16)))
    qtbot.waitUntil(lambda: not label.isVisible(), timeout=5_000)
    assert desk.session.state == State.LISTENING
    desk.camera.camera = Camera(CameraConfig(source=57))  # on, never started
    desk.audio_input.post_from_thread(SpeechStarted(time.perf_counter()))
    qtbot.waitUntil(lambda: label.isVisible(), timeout=5_000)
    assert "understood as you speak" in label.text()  # camera turns are prefilled live too
    desk.window.close()


def test_a_spoken_turn_without_frames_in_its_span_goes_audio_only() -> None:
    from app.camera import CameraFrame
    from app.turn_video import SpokenTurn

    audio = tone(1.0)
    stale = [CameraFrame(np.zeros((48, 64, 3), np.uint8), 2.0 + i / 4, i) for i in range(8)]
    turn = SpokenTurn(audio, 10.0, stale)()
    assert turn.video is None and turn.audio is audio
    many = [CameraFrame(np.zeros((48, 64, 3), np.uint8), 9.5 + i / 4, i) for i in range(8)]
    with_video = SpokenTurn(audio, 10.0, many)()
    assert with_video.video is not None and len(with_video.audio) == len(audio) + 8000
