"""What the Realtime server and the app's client share: formats, limits, codecs and our extensions.

Audio crosses as the GA protocol's `audio/pcm` (16-bit little-endian mono at 24 kHz) both ways;
the model hears 16 kHz, so the server resamples each turn as one stream. Images are data URLs
(JPEG or PNG). Two events are ours, not OpenAI's (README, "The engine server"):
`input_video_frame.append` (a camera frame of the turn being spoken) and `omnidesk.model_status`
(the model's load progress before `session.created`).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import secrets
from typing import Any

import numpy as np

from facts import CODEC_FRAME_SAMPLES, SPEECH_OUT_RATE_HZ, to_float, to_int16
from model.media_input import MODEL_AUDIO_RATE_HZ

WIRE_RATE_HZ = SPEECH_OUT_RATE_HZ  # the GA protocol's only PCM rate; also Code2Wav's output rate
SAMPLES_PER_FRAME = CODEC_FRAME_SAMPLES  # numbers reply chunks for the player
REALTIME_PATH = "/v1/realtime"
API_KEY_ENV = "OMNIDESK_API_KEY"  # where `omnidesk serve` and the app's client read the key

VIDEO_FRAME_APPEND = "input_video_frame.append"
MODEL_STATUS = "omnidesk.model_status"
SPECULATE = "omnidesk.input_audio_buffer.speculate"  # realtime/speculation.py
SPECULATIVE = "omnidesk_speculative"  # on `response.created`: the reply was computed at the pause
EXTENSION_EVENTS = frozenset({VIDEO_FRAME_APPEND, MODEL_STATUS, SPECULATE})

MAX_EVENT_BYTES = 8 * 2**20  # one websocket message (a 1280x1280 PNG fits)
MAX_TURN_AUDIO_S = 300.0  # one input audio buffer
MAX_TURN_FRAMES = 256  # camera frames of one input buffer (2 minutes at 2 fps)
MAX_IMAGE_PIXELS = 4096 * 4096  # decoded size of one image or frame (refused above, before decoding)
MAX_PENDING_ITEMS = 64  # user items waiting for `response.create`
MAX_FRAME_RATE = 8.0  # the rate frames of one turn may declare


class WireError(ValueError):
    """A client event the server cannot use; `code` goes into the `error` event."""

    def __init__(self, message: str, code: str = "invalid_value", param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def error_event(
    message: str,
    code: str,
    *,
    event_id: str | None = None,
    param: str | None = None,
    kind: str = "invalid_request_error",
) -> dict[str, Any]:
    """The protocol's `error` server event; the connection stays open."""
    error: dict[str, Any] = {"type": kind, "code": code, "message": message}
    if event_id is not None:
        error["event_id"] = event_id
    if param is not None:
        error["param"] = param
    return {"type": "error", "event_id": new_id("event"), "error": error}


# -- audio ------------------------------------------------------------------------------------------


def pcm16_bytes(samples: np.ndarray) -> bytes:
    """int16 little-endian bytes of float [-1, 1] or integer samples."""
    return to_int16(samples).astype("<i2").tobytes()


def encode_pcm16(samples: np.ndarray) -> str:
    return base64.b64encode(pcm16_bytes(samples)).decode("ascii")


def decode_b64(data: Any, what: str) -> bytes:
    if not isinstance(data, str):
        raise WireError(f"{what} must be a base64 string")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as error:
        raise WireError(f"{what} is not valid base64 ({error})") from None


def decode_pcm16(data: Any, what: str = "audio") -> np.ndarray:
    """int16 samples of base64 `audio/pcm`; refuses odd byte counts instead of guessing."""
    raw = decode_b64(data, what)
    if len(raw) % 2:
        raise WireError(f"{what} has an odd number of bytes; audio/pcm is 16-bit samples")
    return np.frombuffer(raw, dtype="<i2").astype(np.int16)


def pcm16_to_float(samples: np.ndarray) -> np.ndarray:
    return to_float(np.asarray(samples, dtype=np.int16))


class Resampler:
    """One turn's audio as one resampling stream, so pieces resampled as they arrive add up to
    the same samples every time (the live prefill compares its windows with the whole turn)."""

    def __init__(self, in_rate_hz: int, out_rate_hz: int) -> None:
        import soxr

        self.same = in_rate_hz == out_rate_hz
        self._stream = None if self.same else soxr.ResampleStream(in_rate_hz, out_rate_hz, 1, dtype="float32")

    def push(self, samples: np.ndarray, *, last: bool = False) -> np.ndarray:
        """float32 at the output rate; int16 input is scaled to [-1, 1]."""
        array = np.asarray(samples).reshape(-1)
        if array.dtype == np.int16:
            array = pcm16_to_float(array)
        array = array.astype(np.float32, copy=False)
        if self._stream is None:
            return array
        return np.asarray(self._stream.resample_chunk(array, last=last), dtype=np.float32)


def to_wire(rate_hz: int = MODEL_AUDIO_RATE_HZ) -> Resampler:
    return Resampler(rate_hz, WIRE_RATE_HZ)


def from_wire(rate_hz: int = MODEL_AUDIO_RATE_HZ) -> Resampler:
    return Resampler(WIRE_RATE_HZ, rate_hz)


def audio_end_ms(heard_samples: int, rate_hz: int = WIRE_RATE_HZ) -> int:
    """Milliseconds heard, rounded up so that no part of a codec frame that was heard is lost."""
    return math.ceil(max(0, heard_samples) * 1000 / rate_hz)


def heard_samples(end_ms: int, rate_hz: int = WIRE_RATE_HZ) -> int:
    return max(0, int(end_ms)) * rate_hz // 1000


# -- images -----------------------------------------------------------------------------------------


def image_data_url(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> str:
    """An (h, w, 3) uint8 RGB picture as a data URL; PNG is lossless, JPEG an eighth of the bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    picture = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    if fmt == "png":
        picture.save(buffer, format="PNG", compress_level=1)
    else:
        picture.save(buffer, format="JPEG", quality=quality)
    return f"data:image/{fmt};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_image(url: Any, what: str = "image") -> np.ndarray:
    """(h, w, 3) uint8 RGB from a data URL (or bare base64) of a JPEG or PNG; refuses remote URLs
    (the engine fetches nothing) and pictures over MAX_IMAGE_PIXELS before decoding them."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(url, str):
        raise WireError(f"{what} must be a data URL string")
    if url.startswith(("http://", "https://")):
        raise WireError(f"{what}: remote URLs are not fetched; send a data URL", code="unsupported")
    payload = url.split(",", 1)[1] if url.startswith("data:") and "," in url else url
    raw = decode_b64(payload, what)
    try:
        picture = Image.open(io.BytesIO(raw))
        if picture.width * picture.height > MAX_IMAGE_PIXELS:
            raise WireError(
                f"{what} is {picture.width}x{picture.height}, over the {MAX_IMAGE_PIXELS} pixel limit"
            )
        return np.asarray(picture.convert("RGB"))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise WireError(f"{what} is not a readable JPEG or PNG ({error})") from None
