"""One response: the engine's reply events as the Realtime protocol's server events, in its order
(created, output item and content part added, deltas, then the done events and `response.done`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from events import (
    AudioChunk,
    EngineError,
    TextDelta,
    ToolCallRequested,
    TurnFinished,
    TurnStats,
    UserTranscript,
)
from realtime.items import assistant_item_json, function_call_json
from realtime.wire import WIRE_RATE_HZ, Resampler, encode_pcm16, error_event, new_id


@dataclass
class Response:
    id: str
    item_id: str
    number: int  # the engine's turn id
    turn: Any  # UserTurn
    audio: bool
    metadata: dict[str, Any] | None = None
    audio_item_id: str | None = None  # the user item whose audio the engine transcribes
    cancel: threading.Event = field(default_factory=threading.Event)
    calls: list[dict[str, Any]] = field(default_factory=list)  # its function_call items, as they came

    def json(self, status: str, output: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "realtime.response",
            "status": status,
            "output": output or [],
            "output_modalities": ["audio"] if self.audio else ["text"],
            "metadata": self.metadata,
            **extra,
        }


def run_response(engine: Any, response: Response, send: Callable[[dict[str, Any]], None]) -> None:
    """Run the reply on the engine (the caller's thread) and send its events."""
    where = {"response_id": response.id, "item_id": response.item_id, "output_index": 0}
    part_where = {**where, "content_index": 0}

    def out(kind: str, **fields: Any) -> None:
        send({"type": kind, "event_id": new_id("event"), **fields})

    speak_before = engine.settings.speak
    if response.audio != speak_before:
        engine.configure(speak=response.audio)
    item = assistant_item_json(response.item_id, "", audio=response.audio, status="in_progress")
    item["content"] = []
    out("response.output_item.added", response_id=response.id, output_index=0, item=item)
    empty_part = {"type": "audio", "transcript": ""} if response.audio else {"type": "text", "text": ""}
    out("response.content_part.added", **part_where, part=empty_part)
    text_kind = "response.output_audio_transcript.delta" if response.audio else "response.output_text.delta"
    to_wire: Resampler | None = None
    transcript: list[str] = []
    status, stats = "completed", TurnStats()
    try:
        for event in engine.respond(response.turn, response.number, response.cancel):
            if isinstance(event, TextDelta):
                transcript.append(event.text)
                out(text_kind, **part_where, delta=event.text)
            elif isinstance(event, AudioChunk) and response.audio and not response.cancel.is_set():
                if event.sample_rate != WIRE_RATE_HZ:
                    to_wire = to_wire or Resampler(event.sample_rate, WIRE_RATE_HZ)
                pcm = to_wire.push(event.pcm) if to_wire is not None else event.pcm
                out("response.output_audio.delta", **part_where, delta=encode_pcm16(pcm))
            elif isinstance(event, ToolCallRequested):
                send_call(response, event, out)
            elif isinstance(event, UserTranscript) and response.audio_item_id is not None:
                out(
                    "conversation.item.input_audio_transcription.completed",
                    item_id=response.audio_item_id,
                    content_index=0,
                    transcript=event.text,
                    usage={"type": "duration", "seconds": _audio_s(response.turn)},
                )
            elif isinstance(event, TurnFinished):
                stats = event.stats
                status = "cancelled" if event.stats.cancelled else "completed"
            elif isinstance(event, EngineError):
                status = "failed"
                send(error_event(event.message, event.code, kind="server_error"))
    finally:
        if response.audio != speak_before:
            engine.configure(speak=speak_before)
    text = "".join(transcript)
    if response.audio:
        out("response.output_audio.done", **part_where)
        out("response.output_audio_transcript.done", **part_where, transcript=text)
        done_part = {"type": "audio", "transcript": text}
    else:
        out("response.output_text.done", **part_where, text=text)
        done_part = {"type": "text", "text": text}
    out("response.content_part.done", **part_where, part=done_part)
    final = assistant_item_json(
        response.item_id,
        text,
        audio=response.audio,
        status="completed" if status == "completed" else "incomplete",
    )
    out("response.output_item.done", response_id=response.id, output_index=0, item=final)
    output = [final, *response.calls]
    out(
        "response.done",
        response=response.json(status, output, usage=_usage(stats), status_details=_details(status)),
    )


def send_call(response: Response, call: ToolCallRequested, out: Callable[..., None]) -> None:
    """A call of the model as the protocol carries it (and vLLM-Omni too): a `function_call` output
    item, its arguments as a delta and done; the client runs it and returns a `function_call_output`."""
    index = 1 + len(response.calls)
    item_id = new_id("item")
    where = {"response_id": response.id, "item_id": item_id, "output_index": index, "call_id": call.call_id}
    added = function_call_json(item_id, call.call_id, call.name, "", status="in_progress")
    out("response.output_item.added", response_id=response.id, output_index=index, item=added)
    out("response.function_call_arguments.delta", **where, delta=call.arguments)
    out("response.function_call_arguments.done", **where, name=call.name, arguments=call.arguments)
    item = function_call_json(item_id, call.call_id, call.name, call.arguments, status="completed")
    out("response.output_item.done", response_id=response.id, output_index=index, item=item)
    response.calls.append(item)


def _usage(stats: TurnStats) -> dict[str, Any]:
    """As the protocol counts: input is the whole context the reply read; cached is what was in the
    KV cache before the response began (earlier turns, and what was prefilled while the user spoke)."""
    cached = stats.prompt_tokens - stats.new_prompt_tokens + stats.live_prefilled_tokens
    return {
        "input_tokens": stats.prompt_tokens,
        "output_tokens": stats.text_tokens,
        "total_tokens": stats.prompt_tokens + stats.text_tokens,
        "input_token_details": {"cached_tokens": cached},
    }


def _audio_s(turn: Any) -> float:
    audio = turn.audio
    return 0.0 if audio is None else round(len(audio) / turn.audio_rate_hz, 3)


def _details(status: str) -> dict[str, Any] | None:
    if status == "cancelled":
        return {"type": "cancelled", "reason": "client_cancelled"}
    if status == "failed":
        return {"type": "failed"}
    return None
