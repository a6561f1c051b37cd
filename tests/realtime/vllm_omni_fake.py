"""A stand-in for a vLLM-Omni 0.30.0 server, the one boundary here that we do not own and cannot
run (vLLM-Omni has no CPU platform). It answers with the wire shapes its code defines, read in the
0.30.0 wheel: `vllm_omni/entrypoints/openai/api_server.py` (routes, /v1 auth, modalities check),
`serving_chat.py` (top-level `voice`, `audio.format`, SSE chunks with a top-level `modality`, audio
as base64 in `choices[0].delta.content` with `audio_metadata`, errors as `data: {"error": …}`,
`data: [DONE]` last) and `protocol/audio.py` (`pcm16` means raw s16le at 24 kHz)."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import wave
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

MODEL = "Qwen/Qwen3-Omni-30B-A3B-Instruct"
SPEAKERS = ("ethan", "chelsie", "aiden")
FORMATS = ("wav", "pcm", "pcm16", "flac", "mp3", "opus")


@dataclass
class FakeVllmOmni:
    api_key: str | None = None
    reply_words: tuple[str, ...] = ("Sure,", "here", "is", "my", "answer.")
    audio_chunks: int = 4
    chunk_delay_s: float = 0.0
    fail_with: str | None = None
    # with tools in a request whose last message is not a tool result: the reply is this call, streamed
    # as vLLM's hermes tool parser streams one (the id and name first, the arguments in pieces)
    tool_call: tuple[str, str] | None = None  # (name, arguments JSON)
    requests: list[dict[str, Any]] = field(default_factory=list)
    aborted: int = 0

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if fake.api_key and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    self._json(401, {"error": "Unauthorized"})
                    return False
                return True

            def do_GET(self) -> None:
                if self.path == "/health":
                    self._json(200, {"status": "healthy"})
                elif self.path == "/v1/models" and self._authorized():
                    self._json(
                        200,
                        {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "vllm"}]},
                    )

            def do_POST(self) -> None:
                if self.path != "/v1/chat/completions" or not self._authorized():
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                problem = fake.check(body)
                if problem:
                    self._json(
                        400,
                        {
                            "error": {
                                "message": problem,
                                "type": "BadRequestError",
                                "param": None,
                                "code": 400,
                            }
                        },
                    )
                    return
                fake.requests.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for chunk in fake.chunks(body):
                        self._send_chunk(f"data: {chunk}\n\n")
                        time.sleep(fake.chunk_delay_s)
                    self._send_chunk("data: [DONE]\n\n")
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    fake.aborted += 1

            def _send_chunk(self, text: str) -> None:
                data = text.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        self.server: ThreadingHTTPServer | None = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    server: ThreadingHTTPServer | None = None

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def check(self, body: dict[str, Any]) -> str | None:
        modalities = body.get("modalities")
        if not isinstance(modalities, list) or not all(isinstance(m, str) for m in modalities):
            return 'modalities must be a list of strings, e.g. ["text", "audio", "image"]'
        voice = body.get("voice")
        if voice is not None and voice.lower() not in SPEAKERS:
            return f"Invalid speaker '{voice}'. Supported: {', '.join(SPEAKERS)}"
        fmt = (body.get("audio") or {}).get("format", "wav")
        if fmt not in FORMATS:
            return f"Invalid audio format {fmt}"
        for message in body.get("messages", []):
            for part in message["content"] if isinstance(message["content"], list) else []:
                if part["type"] == "input_audio":
                    with wave.open(io.BytesIO(base64.b64decode(part["input_audio"]["data"]))) as audio:
                        assert audio.getnchannels() == 1 and audio.getsampwidth() == 2
        return None

    def chunks(self, body: dict[str, Any]) -> list[str]:
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": MODEL}
        out: list[dict[str, Any]] = [
            {
                **base,
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
                "modality": "text",
            }
        ]
        if self.fail_with:
            return [
                json.dumps(out[0]),
                json.dumps(
                    {
                        "error": {
                            "message": self.fail_with,
                            "type": "BadRequestError",
                            "param": None,
                            "code": 400,
                        }
                    }
                ),
            ]
        if self.tool_call and body.get("tools") and body["messages"][-1]["role"] != "tool":
            return [json.dumps(c) for c in [*out, *self._call_chunks(base)]]
        for word in self.reply_words:
            out.append(
                {**base, "choices": [{"index": 0, "delta": {"content": word + " "}}], "modality": "text"}
            )
        if "audio" in body["modalities"]:
            for k in range(self.audio_chunks):
                pcm = (3000 * np.sin(np.arange(1920 * 2) * 0.05 + k)).astype("<i2")
                delta = base64.b64encode(pcm.tobytes()).decode()
                meta = {"format": "pcm", "sample_rate_hz": 24000, "frame_count": pcm.size, "channels": 1}
                out.append(
                    {
                        **base,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"role": "assistant", "content": delta},
                                "audio_metadata": meta,
                            }
                        ],
                        "modality": "audio",
                        "usage": {"prompt_tokens": 50, "completion_tokens": 0, "total_tokens": 50},
                    }
                )
        out[-1]["choices"][0]["finish_reason"] = "stop"
        out.append(
            {
                **base,
                "choices": [],
                "usage": {
                    "prompt_tokens": 50,
                    "completion_tokens": len(self.reply_words),
                    "total_tokens": 55,
                },
            }
        )
        return [json.dumps(c) for c in out]

    def _call_chunks(self, base: dict[str, Any]) -> list[dict[str, Any]]:
        assert self.tool_call is not None
        name, arguments = self.tool_call
        half = len(arguments) // 2
        pieces = [
            {
                "index": 0,
                "id": "chatcmpl-tool-1",
                "type": "function",
                "function": {"name": name, "arguments": ""},
            },
            {"index": 0, "function": {"arguments": arguments[:half]}},
            {"index": 0, "function": {"arguments": arguments[half:]}},
        ]
        out = [
            {**base, "choices": [{"index": 0, "delta": {"tool_calls": [p]}}], "modality": "text"}
            for p in pieces
        ]
        out[-1]["choices"][0]["finish_reason"] = "tool_calls"
        return out
