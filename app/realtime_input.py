"""The user's side of the Realtime protocol: a turn as client events.

While the user speaks, each piece of the turn goes out as `input_audio_buffer.append` (resampled to
the wire's 24 kHz as one stream) and each camera frame as our `input_video_frame.append`, stamped
on the turn's audio clock. At the end of the turn whatever was not sent yet follows, then the
commit, the typed part as a user item, and `response.create` carrying the turn id in its metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model.media_input import MODEL_AUDIO_RATE_HZ
from realtime.wire import (
    SPECULATE,
    VIDEO_FRAME_APPEND,
    Resampler,
    encode_pcm16,
    image_data_url,
    new_id,
    to_wire,
)

APPEND_SAMPLES = MODEL_AUDIO_RATE_HZ // 5  # 200 ms of audio per append event at most


def _event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "event_id": new_id("event"), **fields}


@dataclass
class InputStream:
    """The input buffer of the turn being spoken on one connection."""

    frame_format: str = "jpeg"
    samples: int = 0
    frames: int = 0
    fps: float | None = None
    _resampler: Resampler = field(default_factory=to_wire)

    def reset(self) -> None:
        self.samples = self.frames = 0
        self.fps = None
        self._resampler = to_wire()

    def pieces(self, audio: Any, frames: Any = None, fps: float = 0.0) -> list[dict[str, Any]]:
        """Events for more of the turn: its frames first (so the server knows the turn's rate before
        its audio), then the audio."""
        events: list[dict[str, Any]] = []
        for frame in () if frames is None else frames:
            if fps <= 0:
                break
            self.fps = fps
            stamp_ms = self.frames * 1000.0 / fps
            events.append(
                _event(
                    VIDEO_FRAME_APPEND,
                    image=image_data_url(np.asarray(frame), self.frame_format),
                    timestamp_ms=round(stamp_ms, 3),
                    fps=fps,
                )
            )
            self.frames += 1
        samples = np.asarray(audio).reshape(-1)
        self.samples += samples.size
        events += self._appends(self._resampler.push(samples))
        return events

    def speculate(self) -> list[dict[str, Any]]:
        """At a pause: the rest of the stream (flushed; more audio starts a new one, as the server's
        buffer does) and the request to compute the reply now (`realtime/speculation.py`). Nothing
        for a turn with camera frames or no audio: the server would not keep it."""
        if self.frames or not self.samples:
            return []
        events = self._appends(self._resampler.push(np.zeros(0, np.float32), last=True))
        self._resampler = to_wire()
        return [*events, _event(SPECULATE)]

    def rest(self) -> list[dict[str, Any]]:
        """The resampler's last samples of the turn, before its commit."""
        return self._appends(self._resampler.push(np.zeros(0, np.float32), last=True))

    def _appends(self, wire_audio: np.ndarray) -> list[dict[str, Any]]:
        step = APPEND_SAMPLES * 3 // 2
        return [
            _event("input_audio_buffer.append", audio=encode_pcm16(wire_audio[i : i + step]))
            for i in range(0, wire_audio.size, step)
        ]

    def turn(self, turn: Any, turn_id: int) -> list[dict[str, Any]]:
        """The rest of `turn` (a `UserTurn`), its commit, its typed part and the response request."""
        events: list[dict[str, Any]] = []
        if turn.audio is not None:
            audio = np.asarray(turn.audio).reshape(-1)
            video = turn.video
            frames = list(video.frames[self.frames :]) if video is not None else []
            events += self.pieces(audio[self.samples :], frames, video.fps if video is not None else 0.0)
            events += self.rest()
            events.append(_event("input_audio_buffer.commit"))
        for result in turn.tool_results:
            item = {"type": "function_call_output", "call_id": result.call_id, "output": result.output}
            events.append(_event("conversation.item.create", item=item))
        content: list[dict[str, Any]] = []
        if turn.text.strip():
            content.append({"type": "input_text", "text": turn.text})
        content += [{"type": "input_image", "image_url": image_data_url(np.asarray(i))} for i in turn.images]
        if content:
            item = {"type": "message", "role": "user", "content": content}
            events.append(_event("conversation.item.create", item=item))
        events.append(_event("response.create", response={"metadata": {"turn_id": str(turn_id)}}))
        self.reset()
        return events


def replay_events(exchanges: list[Any]) -> list[dict[str, Any]]:
    """A conversation given back to a new engine: each exchange as a user item and the reply heard."""
    events: list[dict[str, Any]] = []
    for exchange in [part for e in exchanges for part in e.as_read()]:
        content: list[dict[str, Any]] = []
        if exchange.audio is not None:
            wire = to_wire().push(exchange.audio, last=True)
            content.append({"type": "input_audio", "audio": encode_pcm16(wire)})
        if exchange.text and not (exchange.audio is not None and exchange.text == "(spoken)"):
            content.append({"type": "input_text", "text": exchange.text})
        content += [
            {"type": "input_image", "image_url": image_data_url(np.asarray(i))} for i in exchange.images
        ]
        if not content:
            continue
        events.append(
            _event("conversation.item.create", item={"type": "message", "role": "user", "content": content})
        )
        reply = {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": exchange.reply}],
        }
        events.append(_event("conversation.item.create", item=reply))
    return events
