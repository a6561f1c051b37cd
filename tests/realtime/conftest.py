"""A real `omnidesk serve` on the demo checkpoint, as a child process on a free loopback port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from realtime.cli import LISTENING

ROOT = Path(__file__).resolve().parents[2]
SMALL_REPLIES = {"max_text_tokens": 8, "max_codec_frames": 8}


def text_item(text: str) -> dict[str, Any]:
    """A typed user message, as `conversation.item.create` carries it."""
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def ask(ws: Any, text: str) -> None:
    """Send a typed turn and ask for the reply, on a raw websocket."""
    ws.send(json.dumps({"type": "conversation.item.create", "item": text_item(text)}))
    ws.send(json.dumps({"type": "response.create"}))


@dataclass
class Served:
    url: str  # ws://127.0.0.1:PORT/v1/realtime
    process: subprocess.Popen[str]
    api_key: str | None

    @property
    def base_url(self) -> str:
        """What the `openai` client takes as `websocket_base_url` (it adds /realtime)."""
        return self.url.removesuffix("/realtime")


def start_server(model_dir: Path, *extra: str, api_key: str | None = None, host: str = "127.0.0.1") -> Served:
    env = {**os.environ, "OMNIDESK_API_KEY": api_key or ""}
    command = [
        sys.executable,
        "-m",
        "main",
        "serve",
        "--model",
        str(model_dir),
        "--host",
        host,
        "--port",
        "0",
        "--engine-options",
        json.dumps(SMALL_REPLIES),
        *extra,
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith(LISTENING):
            return Served(line[len(LISTENING) :].strip(), process, api_key)
    raise AssertionError("the server did not start:\n" + "".join(seen))


def stop_server(served: Served) -> None:
    served.process.terminate()
    try:
        served.process.wait(10)
    except subprocess.TimeoutExpired:
        served.process.kill()


@pytest.fixture(scope="session")
def served(demo_dir: Path) -> Iterator[Served]:
    server = start_server(demo_dir)
    yield server
    stop_server(server)
