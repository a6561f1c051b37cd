"""The webcam path on a synthetic video file: timestamps, frames per turn, time-aligned prompt,
a spoken turn with camera frames answered, and cameras that are missing or die mid-stream."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from app.camera import Camera, CameraConfig, CameraFrame
from app.turn_video import TurnVideoConfig, clip_for_turn, sample_frames
from events import AudioChunk, DeviceLost, DeviceUnavailable, TextDelta, TurnFinished
from model.context import rope_positions
from model.media_input import UserTurn, VideoClip
from tests.engine_helpers import greedy_engine, run, tone

FILE_FPS = 10
SQUARE = 16


def write_video(path: Path, seconds: float, fps: int = FILE_FPS, size: tuple[int, int] = (320, 240)) -> Path:
    """Moving shapes, with the frame number drawn as 8 black/white squares along the top."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    for index in range(int(seconds * fps)):
        frame = np.full((size[1], size[0], 3), 90, np.uint8)
        x = 40 + 8 * index % (size[0] - 80)
        cv2.circle(frame, (x, 140), 25, (0, 200, 255), -1)
        cv2.rectangle(frame, (size[0] - x, 60), (size[0] - x + 40, 100), (255, 60, 0), -1)
        for bit in range(8):
            value = 255 if index >> bit & 1 else 0
            frame[0:SQUARE, bit * SQUARE : (bit + 1) * SQUARE] = value
        writer.write(frame)
    writer.release()
    return path


def frame_number(rgb: np.ndarray) -> int:
    height = rgb.shape[0]
    square = SQUARE * height // 240
    bits = [rgb[:square, b * square : (b + 1) * square].mean() > 128 for b in range(8)]
    return sum(1 << b for b, on in enumerate(bits) if on)


def wait_for(condition, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def video_file(tmp_path: Path) -> Path:
    return write_video(tmp_path / "camera.avi", seconds=3.0)


def test_frames_arrive_in_order_with_monotonic_timestamps(video_file: Path) -> None:
    events: list[object] = []
    with Camera(
        CameraConfig(source=str(video_file), store_fps=FILE_FPS, retry_min_s=30), events.append
    ) as camera:
        assert wait_for(lambda: camera.status == "failed")  # the file ended
        stored = camera.frames_between(-1e9, 1e9)
    times = [f.time_s for f in stored]
    numbers = [frame_number(f.rgb) for f in stored]
    assert len(stored) >= 20
    assert times == sorted(times) and len(set(times)) == len(times)
    assert numbers == sorted(numbers)
    # Played in real time: the timestamps span the file's duration.
    assert times[-1] - times[0] == pytest.approx((numbers[-1] - numbers[0]) / FILE_FPS, abs=0.5)
    assert DeviceLost("camera", str(video_file)) in events


def test_a_four_second_turn_at_two_fps_takes_the_right_frames() -> None:
    frames = [CameraFrame(np.full((8, 8, 3), i, np.uint8), 100.0 + i / 10, i) for i in range(80)]
    config = TurnVideoConfig(fps=2.0, lead_in_s=0.5, still_difference=-1)
    audio = tone(4.0)
    result = clip_for_turn(frames, audio, audio_start_s=102.0, config=config)
    assert result is not None
    clip, padded = result
    # Ticks every 0.5 s from 1.5 s to 6 s after the first frame: 10 frames, frame k at k / 2 s.
    assert [int(f[0, 0, 0]) for f in clip.frames] == list(range(15, 61, 5))
    assert clip.fps == 2.0 and len(padded) == len(audio) + 8000
    assert not padded[:8000].any()


def test_a_still_scene_is_sampled_at_the_lower_rate() -> None:
    still = [CameraFrame(np.zeros((8, 8, 3), np.uint8), i / 10, i) for i in range(60)]
    result = clip_for_turn(still, tone(4.0), audio_start_s=1.0, config=TurnVideoConfig())
    assert result is not None and result[0].fps == 1.0 and len(result[0].frames) == 5


def test_a_late_camera_repeats_its_first_frame_to_keep_time() -> None:
    frames = [CameraFrame(np.full((4, 4, 3), i, np.uint8), 10.0 + i, i) for i in range(5)]
    picked = sample_frames(frames, 8.0, 11.0, fps=1.0)
    assert [f.index for f in picked] == [0, 0, 0, 1]


def test_prompt_interleaves_video_and_audio_in_time(demo) -> None:
    engine = greedy_engine(demo, speak=False, max_text_tokens=2)
    frames = np.random.default_rng(0).integers(0, 256, (8, 240, 320, 3), dtype=np.uint8)
    run(engine, UserTurn(audio=tone(4.0), video=VideoClip(frames, 2.0)))
    segment = next(s for s in engine.context.segments if "video_grid_thw" in s.media)
    ids = engine.context.all_ids()
    positions = rope_positions(engine.thinker.model, ids, engine.context.media_index())[1, 0]
    config = demo.model.config.thinker_config
    media = (ids == config.audio_token_id) | (ids == config.video_token_id)
    kinds = ids[media]
    times = positions[media]
    assert bool((kinds == config.audio_token_id).any()) and bool((kinds == config.video_token_id).any())
    # Interleaved, not one block after the other...
    switches = int((kinds[1:] != kinds[:-1]).sum())
    assert switches >= 6
    # ...and in time order across the two streams.
    assert bool((times[1:] >= times[:-1]).all())
    assert int(segment.media["video_grid_thw"][0, 0]) == 4  # 8 frames, 2 per temporal patch


def test_spoken_turn_with_camera_frames_gets_text_and_speech(demo) -> None:
    engine = greedy_engine(demo)
    frames = np.random.default_rng(1).integers(0, 256, (6, 240, 320, 3), dtype=np.uint8)
    events = run(engine, UserTurn(audio=tone(3.0), video=VideoClip(frames, 2.0)))
    kinds = {type(e) for e in events}
    assert {TextDelta, AudioChunk, TurnFinished} <= kinds


def test_camera_turn_talker_hears_audio_and_frames_interleaved_unlike_generate(demo) -> None:
    """Our choice for camera turns: the Talker's positions of the user turn are the Thinker's
    audio-in-video TM-RoPE positions (`use_audio_in_video`), as the Thinker saw the turn.
    transformers' `generate()` does not pass `use_audio_in_video` on to the Talker, so its codes
    for such a turn differ from ours by design (the README says so)."""
    from model.context import MediaIndex, user_position_mask

    engine = greedy_engine(demo, max_text_tokens=2, max_codec_frames=2)
    frames = np.random.default_rng(1).integers(0, 256, (6, 240, 320, 3), dtype=np.uint8)
    run(engine, UserTurn(audio=tone(3.0), video=VideoClip(frames, 2.0)))
    segment = next(s for s in engine.context.segments if "video_grid_thw" in s.media)
    config = demo.model.config
    users = user_position_mask(segment.ids, config.im_start_token_id, config.user_token_id)
    media = MediaIndex.of([segment])
    ours = rope_positions(engine.thinker.model, segment.ids, media)[1:, 0][:, users]
    assert segment.talker_positions is not None
    assert torch.equal(segment.talker_positions, ours - ours[:, :1])
    row = segment.ids.view(1, -1)
    theirs, _ = engine.thinker.model.get_rope_index(
        row,
        video_grid_thw=media.video_grid_thw,
        attention_mask=torch.ones_like(row),
        use_audio_in_video=False,
        audio_seqlens=media.audio_lengths,
        second_per_grids=media.video_second_per_grid,
    )
    theirs = theirs[:, 0][:, users]
    assert not torch.equal(segment.talker_positions, theirs - theirs[:, :1])


def test_missing_camera_reports_and_the_conversation_goes_on(demo) -> None:
    events: list[object] = []
    with Camera(CameraConfig(source=57, retry_min_s=0.05, retry_max_s=0.1), events.append) as camera:
        assert wait_for(lambda: camera.failures >= 2)
        assert camera.status == "failed" and "cannot be opened" in camera.message
        assert camera.latest() is None
        run(greedy_engine(demo, speak=False), UserTurn(audio=tone(1.0)))
    # a camera that never opened is unavailable, not lost (issue 14: it never "stopped working")
    assert DeviceUnavailable("camera", "57", camera.message) in events


def test_a_camera_that_dies_mid_stream_comes_back(video_file: Path) -> None:
    lost = threading.Event()
    with Camera(CameraConfig(source=str(video_file), retry_min_s=0.1), lambda e: lost.set()) as camera:
        assert wait_for(lost.is_set)
        read_at_loss = camera.frames_read
        assert camera.message.endswith("the video file ended")
        assert wait_for(lambda: camera.frames_read > read_at_loss + 5)  # reopened after the back-off
        assert camera.status == "running"


def test_unknown_camera_name_lists_what_exists(demo) -> None:
    from app.camera import CameraError, resolve_source

    with pytest.raises(CameraError, match="no camera or video file matches 'Nonexistent Cam'"):
        resolve_source("Nonexistent Cam")


class RecordedCamera:
    """Stored frames with timestamps, as `Camera.frames_between` returns them (a recorded camera)."""

    def __init__(self, frames: list[CameraFrame]) -> None:
        self.frames = frames
        self.now_s = 0.0  # frames after this have not arrived yet

    def frames_between(self, start_s: float, end_s: float) -> list[CameraFrame]:
        return [f for f in self.frames if start_s <= f.time_s <= min(end_s, self.now_s)]


def test_camera_frames_fed_while_speaking_give_the_one_shot_reply(demo) -> None:
    """The app's live path with a camera: `LiveClip` feeds audio (after the lead-in silence) and the
    frames at the clip's ticks as they arrive; `SpokenTurn` picks the final clip the same way, so the
    windows fed early are kept and the reply equals a one-shot prefill of the same turn."""
    from app.turn_video import LiveClip, SpokenTurn
    from tests.test_live_turn import quantized, speech_like

    rng = np.random.default_rng(4)
    frames = [
        CameraFrame(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), 50.0 + i / 8, i)
        for i in range(8 * 25)
    ]
    camera = RecordedCamera(frames)
    audio = quantized(speech_like(18.0))
    audio_start_s = 52.0
    live_engine = greedy_engine(demo)
    clip = None
    windows = 0
    for start in range(0, audio.size, 8000):
        camera.now_s = audio_start_s + (start + 8000) / 16_000 + 0.2
        if clip is None:
            clip = LiveClip(camera, audio_start_s)
        piece, piece_frames = clip.add(audio[start : start + 8000])
        windows = live_engine.listen(piece, piece_frames, clip.fps)
    assert clip is not None and clip.fps == 2.0
    assert windows == 2
    camera.now_s = 1e9
    turn = SpokenTurn(
        audio, audio_start_s, camera.frames_between(audio_start_s - 2.0, audio_start_s + 18.0)
    )()
    assert turn.video is not None
    finished = run(live_engine, turn)[-1]
    one_shot_engine = greedy_engine(demo)
    run(one_shot_engine, turn)
    assert isinstance(finished, TurnFinished) and finished.stats.live_prefilled_tokens > 0
    assert live_engine.last_reply_ids == one_shot_engine.last_reply_ids
    assert live_engine.last_codes is not None and one_shot_engine.last_codes is not None
    assert torch.equal(live_engine.last_codes, one_shot_engine.last_codes)
