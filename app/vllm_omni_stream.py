"""Reading vLLM-Omni's streamed chat completions (server-sent events), one parsed chunk at a time:
the reply, the spoken notice and the text answer aside all read the same stream."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from realtime.wire import WIRE_RATE_HZ, pcm16_to_float


def stream_chunks(
    http: Any, url: str, body: dict[str, Any], opened: Callable[[Any], None] | None = None
) -> Iterator[dict[str, Any]]:
    """POST `body` to `url`/chat/completions and yield each `data:` chunk until `[DONE]`; an HTTP
    error or an `error` chunk raises with the server's message. `opened` gets the response first
    (closing it from another thread ends the stream)."""
    with http.stream("POST", f"{url}/chat/completions", json=body) as response:
        if opened is not None:
            opened(response)
        if response.status_code != 200:
            response.read()
            raise RuntimeError(error_text(response.text, response.status_code))
        for line in response.iter_lines():
            data = line[5:].strip() if line.startswith("data:") else ""
            if data == "[DONE]":
                return
            if not data:
                continue
            chunk = json.loads(data)
            if "error" in chunk:
                raise RuntimeError(error_text(json.dumps(chunk), 200))
            yield chunk


def chunk_content(chunk: dict[str, Any]) -> str:
    """The chunk's text, or its base64 audio when its top-level `modality` is audio."""
    choices = chunk.get("choices") or []
    return str((choices[0].get("delta") or {}).get("content") or "") if choices else ""


def chunk_audio(chunk: dict[str, Any]) -> tuple[np.ndarray, int] | None:
    """An audio chunk's samples (float32) and rate; None for any other chunk."""
    content = chunk_content(chunk)
    if chunk.get("modality") != "audio" or not content:
        return None
    metadata = (chunk.get("choices") or [{}])[0].get("audio_metadata") or {}
    rate = int(metadata.get("sample_rate_hz", WIRE_RATE_HZ))
    return pcm16_to_float(np.frombuffer(base64.b64decode(content), "<i2")), rate


def error_text(body: str, status: int) -> str:
    """The server's own message, from an error body or chunk."""
    try:
        error = json.loads(body).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = body[:300]
    return f"HTTP {status}: {message}" if status != 200 else str(message)
