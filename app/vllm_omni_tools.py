"""Tools through vLLM-Omni's chat completions (a server started with `--enable-auto-tool-choice
--tool-call-parser hermes`): the tools as the request's `tools`, the model's calls streamed as
`choices[0].delta.tool_calls` pieces, and the results sent back in the next request as the
assistant's `tool_calls` message followed by one `role: tool` message per call. The server keeps
no state, so the calls of a turn are kept here until their results go back."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from app.vllm_omni_stream import chunk_audio, chunk_content, stream_chunks
from events import ToolCallRequested

log = logging.getLogger(__name__)


def tools_param(tools: tuple[Any, ...]) -> list[dict[str, Any]]:
    """The request's `tools` (each a `model.tool_format.ToolSpec`)."""
    return [tool.declaration() for tool in tools]


@dataclass
class StreamedCalls:
    """The calls of one streamed reply, put together from their pieces (by index)."""

    calls: dict[int, dict[str, str]] = field(default_factory=dict)

    def push(self, delta: dict[str, Any]) -> None:
        for piece in delta.get("tool_calls") or []:
            call = self.calls.setdefault(int(piece.get("index", 0)), {"id": "", "name": "", "arguments": ""})
            function = piece.get("function") or {}
            call["id"] = piece.get("id") or call["id"]
            call["name"] = function.get("name") or call["name"]
            call["arguments"] += function.get("arguments") or ""

    def events(self, turn_id: int) -> list[ToolCallRequested]:
        now = time.perf_counter()
        ordered = [self.calls[i] for i in sorted(self.calls)]
        return [ToolCallRequested(turn_id, c["id"] or f"call_{i}", c["name"], c["arguments"] or "{}", now)
                for i, c in enumerate(ordered)]  # fmt: skip

    def assistant_message(self, text: str) -> dict[str, Any]:
        """What the model said and called, as the next request gives it back."""
        calls = [
            {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in self.events(0)
        ]
        return {"role": "assistant", "content": text or None, "tool_calls": calls}


def tool_messages(results: tuple[Any, ...]) -> list[dict[str, Any]]:
    """One `role: tool` message per result (`model.tool_format.ToolResult`), in the calls' order."""
    return [{"role": "tool", "tool_call_id": r.call_id, "content": r.output} for r in results]


def answer_aside(client: Any, turn: Any) -> str:
    """A turn's text answer out of the conversation: vLLM-Omni keeps no state, so it is a request
    of its own (that turn alone, no system turn, no tools, text only), its streamed text joined."""
    import numpy as np

    from app.client_history import Exchange
    from app.vllm_omni_client import user_content

    audio = None if turn.audio is None else np.asarray(turn.audio).reshape(-1)
    body = {
        "model": client.model,
        "messages": [{"role": "user", "content": user_content(Exchange(0, turn.text, audio))}],
        "stream": True,
        "modalities": ["text"],
    }
    text = [
        chunk_content(chunk)
        for chunk in stream_chunks(client.http, client.url, body)
        if chunk.get("modality", "text") == "text"
    ]
    return "".join(text).strip()


def speak_notice(client: Any, key: int, request: str) -> None:
    """A tool's "still running" notice, spoken out of the conversation: a request of its own (the
    persona's system turn and `request`, text and audio, the session's voice, no tools), its audio
    to the speaker under the notice's own turn id (`realtime_notice.notice_turn`) until it is cut."""
    from app.realtime_notice import notice_turn
    from events import AudioChunk
    from realtime.wire import SAMPLES_PER_FRAME

    system = [{"role": "system", "content": client.prompt}] if client.prompt else []
    body = {
        "model": client.model,
        "messages": [*system, {"role": "user", "content": request}],
        "stream": True,
        "modalities": ["text", "audio"],
        "voice": client.voice,
        "audio": {"format": "pcm16"},
    }
    turn_id, samples = notice_turn(key), 0
    try:
        for chunk in stream_chunks(client.http, client.url, body):
            if key in client.notices_cut:
                return
            audio = chunk_audio(chunk)
            if audio is not None:
                pcm, rate = audio
                client.feeder.write(AudioChunk(turn_id, pcm, rate, samples // SAMPLES_PER_FRAME))
                samples += pcm.size
    except Exception as error:
        log.warning("vLLM-Omni at %s could not say that a tool still runs (%s)", client.url, error)
    finally:
        client.feeder.finish_turn(turn_id)


def flush_notice(client: Any, key: int) -> None:
    """Cut notice `key` at the speaker (the worker's job: a flush may wait for the audio callback)."""
    flush = getattr(client.feeder.speech, "flush", None)
    if flush is not None:
        flush(-key)
