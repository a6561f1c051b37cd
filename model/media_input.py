"""What a user turn carries into the model, checked and converted once at the engine's door.

Audio of any rate and channel count becomes 16 kHz mono float32; an image of any size becomes an
RGB picture within the pixel budget. What cannot be used is refused with a message that says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model.tool_format import ToolResult

MODEL_AUDIO_RATE_HZ = 16_000  # the Whisper feature extractor's rate (the processor's `sampling_rate`)
MIN_AUDIO_S = 0.1
MAX_AUDIO_S = 600.0
SILENCE_DBFS = -70.0
MAX_IMAGE_PIXELS = 1280 * 1280
VIDEO_MAX_PIXELS = 320 * 240  # per frame: about 70 prompt tokens per second of video at 2 fps
VISION_CELL_PX = 32  # patch 16 x spatial merge 2: frame sides are multiples of this


class InputError(ValueError):
    """A user turn the model cannot take; the message says what is wrong."""


@dataclass(frozen=True)
class VideoClip:
    """Camera frames of one turn: (t, h, w, 3) uint8 RGB, sampled at `fps`, the first frame at the
    start of the turn's audio; they go into the model interleaved in time with that audio."""

    frames: Any
    fps: float


@dataclass(frozen=True)
class UserTurn:
    """One user turn: typed text, spoken audio, images, or camera frames, in any mix; or the
    results of the tool calls the last reply ended with (the reply goes on after them)."""

    text: str = ""
    audio: Any = None  # numpy array, (n,) or (n, channels), int16 or float
    audio_rate_hz: int = MODEL_AUDIO_RATE_HZ
    images: tuple[Any, ...] = field(default_factory=tuple)
    video: VideoClip | None = None
    tool_results: tuple[ToolResult, ...] = ()

    @property
    def is_empty(self) -> bool:
        media = self.audio is not None or self.images or self.video is not None
        return not self.text.strip() and not media and not self.tool_results


def prepare_audio(audio: Any, rate_hz: int) -> np.ndarray:
    """16 kHz mono float32 in [-1, 1], or InputError naming the problem."""
    array = np.asarray(audio)
    if array.ndim == 2 and array.shape[0] < array.shape[1]:
        array = array.T  # (channels, samples)
    if array.ndim not in (1, 2):
        raise InputError(f"audio must be mono or (samples, channels), got shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float32) / (float(np.iinfo(array.dtype).max) + 1.0)
    elif not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"audio samples must be integers or floats, got {array.dtype}")
    if array.ndim == 2:
        array = array.mean(axis=1)
    array = np.ascontiguousarray(array, dtype=np.float32)
    if rate_hz <= 0:
        raise InputError(f"audio sample rate must be positive, got {rate_hz} Hz")
    if rate_hz != MODEL_AUDIO_RATE_HZ:
        import soxr

        array = soxr.resample(array, rate_hz, MODEL_AUDIO_RATE_HZ).astype(np.float32)
    seconds = array.shape[0] / MODEL_AUDIO_RATE_HZ
    if seconds < MIN_AUDIO_S:
        raise InputError(
            f"audio is empty or too short ({seconds * 1000:.0f} ms; at least {MIN_AUDIO_S * 1000:.0f} ms)"
        )
    if seconds > MAX_AUDIO_S:
        raise InputError(f"audio is too long ({seconds:.0f} s; at most {MAX_AUDIO_S:.0f} s per turn)")
    if not np.all(np.isfinite(array)):
        raise InputError("audio contains NaN or infinite samples")
    rms = float(np.sqrt(np.mean(np.square(array, dtype=np.float64))))
    if rms == 0.0 or 20 * np.log10(rms) < SILENCE_DBFS:
        raise InputError(f"audio is silent (below {SILENCE_DBFS:.0f} dBFS): nothing to answer")
    return np.clip(array, -1.0, 1.0)


def prepare_image(image: Any) -> Any:
    """An RGB PIL image within MAX_IMAGE_PIXELS (downscaled, aspect kept), or InputError."""
    from PIL import Image

    if isinstance(image, Image.Image):
        picture = image
    else:
        array = np.asarray(image)
        if array.ndim not in (2, 3) or array.size == 0:
            raise InputError(f"image must be (h, w) or (h, w, channels), got shape {array.shape}")
        if array.dtype != np.uint8:
            raise InputError(f"image must be uint8, got {array.dtype}")
        picture = Image.fromarray(array)
    picture = picture.convert("RGB")
    width, height = picture.size
    if min(width, height) < 16:
        raise InputError(f"image is too small ({width}x{height}; at least 16x16)")
    if width * height > MAX_IMAGE_PIXELS:
        scale = (MAX_IMAGE_PIXELS / (width * height)) ** 0.5
        size = (max(16, int(width * scale)), max(16, int(height * scale)))
        picture = picture.resize(size, Image.Resampling.BICUBIC)
    return picture


def prepare_video(
    clip: VideoClip, max_pixels: int = VIDEO_MAX_PIXELS, start: int = 0
) -> tuple[np.ndarray, float]:
    """Frames resized within `max_pixels` (sides multiples of 32), an even count (the vision
    encoder takes frames in pairs: the last is repeated), and the frame rate; or InputError.
    With `start` (even), only the frames from there on: a live turn's end fits just its tail
    (each frame is fitted alone, to one size for the clip, so the tail comes out the same)."""
    total = len(clip.frames)
    frames = np.asarray(clip.frames[start:] if start else clip.frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or total == 0:
        raise InputError(f"video frames must be (t, h, w, 3), got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise InputError(f"video frames must be uint8, got {frames.dtype}")
    if not clip.fps > 0:
        raise InputError(f"video frame rate must be positive, got {clip.fps}")
    frames = fit_frames(frames, max_pixels)
    if total % 2:
        frames = np.concatenate([frames, frames[-1:]])
    return frames, float(clip.fps)


def fit_frames(frames: np.ndarray, max_pixels: int) -> np.ndarray:
    """(t, h, w, 3) frames resized within `max_pixels`, sides multiples of 32 (one size for all)."""
    import cv2

    height, width = frames.shape[1:3]
    scale = min(1.0, (max_pixels / (height * width)) ** 0.5)
    size = [
        max(VISION_CELL_PX, int(side * scale) // VISION_CELL_PX * VISION_CELL_PX) for side in (width, height)
    ]
    if (size[0], size[1]) != (width, height) and frames.shape[0]:
        frames = np.stack([cv2.resize(f, (size[0], size[1]), interpolation=cv2.INTER_AREA) for f in frames])
    return np.ascontiguousarray(frames)
