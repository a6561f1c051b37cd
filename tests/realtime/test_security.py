"""Safe by default: no key off loopback means no start, a wrong key is refused, and a flood of bad
events leaves the server up, answering each with an `error`, with flat memory."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.realtime.conftest import ROOT, Served, ask, start_server, stop_server

pytestmark = pytest.mark.timeout(300)


def test_off_loopback_without_a_key_does_not_start() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMNIDESK_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "main", "serve", "--demo", "--host", "0.0.0.0", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without a key" in done.stderr and "OMNIDESK_API_KEY" in done.stderr


def test_a_wrong_or_missing_key_is_refused_and_the_key_never_logged(demo_dir: Path) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    key = "k3y-that-must-not-leak"
    served = start_server(demo_dir, api_key=key)
    try:
        for headers in ({"Authorization": "Bearer wrong"}, {}, {"Authorization": f"Basic {key}"}):
            with pytest.raises(InvalidStatus) as refused:
                connect(served.url, additional_headers=headers).close()
            assert refused.value.response.status_code == 401
        with connect(served.url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
            while (event := json.loads(ws.recv(timeout=120)))["type"] != "session.created":
                assert event["type"] == "omnidesk.model_status"
    finally:
        stop_server(served)
        output = served.process.stdout.read() if served.process.stdout else ""
    assert key not in output


def bad_events() -> list[Any]:
    """A thousand ways to get an event wrong."""
    odd_audio = base64.b64encode(b"\x01\x02\x03").decode()
    samples = [
        "not json",
        '{"type": "input_audio_buffer.append", "audio": "AAAA',  # cut off mid-message
        "[1, 2, 3]",
        json.dumps({"no_type": True}),
        json.dumps({"type": "no.such.event"}),
        json.dumps({"type": 42}),
        json.dumps({"type": "input_audio_buffer.append", "audio": "***not base64***"}),
        json.dumps({"type": "input_audio_buffer.append", "audio": odd_audio}),
        json.dumps({"type": "input_audio_buffer.append"}),
        json.dumps({"type": "input_audio_buffer.commit"}),  # nothing to commit
        json.dumps({"type": "conversation.item.create", "item": "a string"}),
        json.dumps(
            {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": []}}
        ),
        json.dumps(
            {
                "type": "conversation.item.create",
                "item": {
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}],
                },
            }
        ),
        json.dumps(
            {
                "type": "conversation.item.create",
                "item": {
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": "https://example.invalid/cat.png"}],
                },
            }
        ),
        json.dumps(
            {"type": "conversation.item.truncate", "item_id": "nope", "content_index": 0, "audio_end_ms": -5}
        ),
        json.dumps({"type": "response.cancel"}),  # nothing to cancel
        json.dumps({"type": "response.create"}),  # nothing to answer
        json.dumps({"type": "session.update", "session": {"audio": {"output": {"voice": "nobody"}}}}),
        json.dumps(
            {"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/pcmu"}}}}}
        ),
        json.dumps({"type": "input_video_frame.append", "image": "xx", "timestamp_ms": 0, "fps": 99}),
        json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 200_001}),  # cut-off base64
    ]
    return [samples[i % len(samples)] for i in range(1000)]


def test_a_thousand_bad_events_leave_the_server_up_with_flat_memory(served: Served) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    server = psutil.Process(served.process.pid)
    with connect(served.url, max_size=2**24) as ws:
        while json.loads(ws.recv(timeout=120))["type"] != "session.created":
            pass
        rss_before = server.memory_info().rss
        errors = 0
        for message in bad_events():
            ws.send(message)
            event = json.loads(ws.recv(timeout=30))
            assert event["type"] == "error", event
            assert event["error"]["message"]
            errors += 1
        rss_after = server.memory_info().rss
        assert errors == 1000
        ask(ws, "still there?")
        while (event := json.loads(ws.recv(timeout=120)))["type"] != "response.done":
            assert event["type"] != "error", event
        assert event["response"]["status"] == "completed"
    assert rss_after - rss_before < 32 * 2**20, (rss_before, rss_after)
    with connect(served.url, max_size=2**24) as ws:  # an oversized message closes only its connection
        ws.send("x" * (9 * 2**20))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert served.process.poll() is None
