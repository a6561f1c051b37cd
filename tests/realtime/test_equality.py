"""Through the server, a greedy reply equals the in-process engine's: a spoken turn prefilled live
with camera frames (text ids, codec codes, audio within 1e-4), and the reply after a truncation."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from app.realtime_input import InputStream
from model.media_input import MODEL_AUDIO_RATE_HZ, UserTurn, VideoClip
from model.sampling import SamplingPlan
from realtime.host import ModelHost
from realtime.wire import decode_image, from_wire, heard_samples
from tests.engine_helpers import SYSTEM, greedy_engine, pcm_of, run, text_of
from tests.realtime.conformance import recv_until
from tests.realtime.conftest import ask
from tests.realtime.inproc import server_thread
from tests.test_live_turn import camera, speech_like

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

FPS = 2.0
LIMITS = {"max_text_tokens": 12, "max_codec_frames": 16}


def audio_of(events: list[dict[str, Any]]) -> np.ndarray:
    raw = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")
    return np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0


def test_live_camera_turn_and_truncation_equal_the_in_process_engine(demo: Any) -> None:
    from websockets.sync.client import connect

    plan = SamplingPlan.from_generation_config(demo.model.generation_config).greedy()
    host = ModelHost(demo.model, demo.processor, {"source": "demo"}, {"sampling": plan, **LIMITS})
    seconds = 18.0
    audio = (speech_like(seconds) * 32767).astype(np.int16)
    frames = camera(seconds)
    stream = InputStream(frame_format="png")
    sent_audio: list[np.ndarray] = []  # the 16 kHz pieces the server hears, resampled as it does
    server_side = from_wire()
    piece = MODEL_AUDIO_RATE_HZ // 2
    with server_thread(host) as (url, state), connect(url) as ws:
        recv_until(ws, "session.created")
        ws.send(
            json.dumps({"type": "session.update", "session": {"type": "realtime", "instructions": SYSTEM}})
        )
        recv_until(ws, "session.updated")
        frames_sent = 0
        for start in range(0, audio.size, piece):
            due = min(len(frames), int((start + piece) / MODEL_AUDIO_RATE_HZ * FPS))
            events = stream.pieces(audio[start : start + piece], frames[frames_sent:due], FPS)
            frames_sent = due
            for event in events:
                if event["type"] == "input_audio_buffer.append":
                    sent_audio.append(
                        server_side.push(np.frombuffer(base64.b64decode(event["audio"]), "<i2"))
                    )
                ws.send(json.dumps(event))
        turn = UserTurn(audio=audio, video=VideoClip(frames, FPS))
        for event in stream.turn(turn, 1):
            if event["type"] == "input_audio_buffer.append":
                sent_audio.append(server_side.push(np.frombuffer(base64.b64decode(event["audio"]), "<i2")))
            ws.send(json.dumps(event))
        sent_audio.append(server_side.push(np.zeros(0, np.int16), last=True))
        served = recv_until(ws, "response.done")
        usage = served[-1]["response"]["usage"]
        (conversation,) = state.conversations
        server_engine = conversation.engine
        server_ids, server_codes = server_engine.last_reply_ids, server_engine.last_codes
        item_id = served[-1]["response"]["output"][0]["id"]
        ws.send(
            json.dumps(
                {
                    "type": "conversation.item.truncate",
                    "item_id": item_id,
                    "content_index": 0,
                    "audio_end_ms": 200,
                }
            )
        )
        truncated = recv_until(ws, "conversation.item.truncated")[-1]
        ask(ws, "go on")
        after = recv_until(ws, "response.done")
        after_ids, after_codes = server_engine.last_reply_ids, server_engine.last_codes

    assert usage["input_token_details"]["cached_tokens"] > 0  # windows were prefilled while it was spoken

    # The same turn in process: the same 16 kHz samples, the frames as the server decoded them.
    engine = greedy_engine(demo, **LIMITS)
    heard = np.concatenate(sent_audio)
    decoded = np.stack([decode_image(stream_frame) for stream_frame in _png_frames(frames)])
    fed = frames_fed = 0
    for piece_audio in sent_audio[:-1]:
        fed += piece_audio.size
        due = min(len(decoded), int(fed / MODEL_AUDIO_RATE_HZ * FPS))
        engine.listen(piece_audio, list(decoded[frames_fed:due]), FPS)
        frames_fed = due
    local = run(engine, UserTurn(audio=heard, video=VideoClip(decoded[:frames_fed], FPS)))
    assert engine.last_reply_ids == server_ids
    assert engine.last_codes is not None and server_codes is not None
    assert np.array_equal(engine.last_codes.numpy(), server_codes.numpy())
    np.testing.assert_allclose(audio_of(served), pcm_of(local), atol=1e-4)
    assert "".join(
        e["delta"] for e in served if e["type"] == "response.output_audio_transcript.delta"
    ) == text_of(local)

    assert engine.truncate_last_reply(heard_samples(200)) == truncated["transcript"]
    local = run(engine, UserTurn(text="go on"), 2)
    assert engine.last_reply_ids == after_ids and np.array_equal(
        engine.last_codes.numpy(), after_codes.numpy()
    )
    np.testing.assert_allclose(audio_of(after), pcm_of(local), atol=1e-4)


def _png_frames(frames: np.ndarray) -> list[str]:
    from realtime.wire import image_data_url

    return [image_data_url(frame, "png") for frame in frames]
