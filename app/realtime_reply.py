"""A reply as the Realtime client follows it: what it knows of each reply in flight
(`PendingReply`), and what each of the server's `response.*` events does to it: text to the window,
audio to the speaker, a function call reported, and at `response.done` the turn's stats. These run
on the client's reader thread."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from app.realtime_aside import aside_done
from events import AudioChunk, EngineError, TextDelta, TurnFinished, TurnStats
from realtime.wire import SAMPLES_PER_FRAME, SPECULATIVE, WIRE_RATE_HZ, decode_pcm16, new_id, pcm16_to_float

if TYPE_CHECKING:
    from app.realtime_client import RealtimeEngine


@dataclass
class PendingReply:
    turn_id: int
    started_s: float
    speak: bool
    response_id: str | None = None
    item_id: str | None = None
    text: list[str] = field(default_factory=list)
    calls: int = 0  # function calls of this response: the turn goes on once their outputs are back
    speculative: bool = False  # the server computed it at the user's pause (realtime/speculation.py)
    samples: int = 0
    first_text_s: float | None = None
    cancelled: bool = False
    turn: Any = None  # the UserTurn, sent again if the engine died before it took the request


def reply_of(client: RealtimeEngine, event: dict[str, Any]) -> PendingReply | None:
    response_id = event.get("response_id") or (event.get("response") or {}).get("id")
    return next((r for r in client.replies.values() if r.response_id == response_id), None)


def created(client: RealtimeEngine, event: dict[str, Any]) -> None:
    response = event.get("response") or {}
    turn_id = int(((response.get("metadata") or {}).get("turn_id")) or -1)
    reply = client.replies.get(turn_id)
    if reply is None:
        return
    reply.response_id = response.get("id")
    reply.speculative = bool(event.get(SPECULATIVE))
    if reply.cancelled:
        client.send(
            {"type": "response.cancel", "event_id": new_id("event"), "response_id": reply.response_id}
        )


def item_added(client: RealtimeEngine, event: dict[str, Any]) -> None:
    reply = reply_of(client, event)
    item = event.get("item") or {}
    item_id = item.get("id")
    if reply is not None and isinstance(item_id, str) and item.get("type", "message") == "message":
        reply.item_id = item_id
        client.item_of_turn[reply.turn_id] = item_id
        client.item_of_turn = {t: i for t, i in client.item_of_turn.items() if t > reply.turn_id - 64}


def text_delta(client: RealtimeEngine, event: dict[str, Any]) -> None:
    reply = reply_of(client, event)
    if reply is None or reply.cancelled:
        return
    reply.text.append(str(event.get("delta", "")))
    if reply.first_text_s is None:
        reply.first_text_s = time.perf_counter()
    client.signals.report(TextDelta(reply.turn_id, str(event.get("delta", ""))))


def audio_delta(client: RealtimeEngine, event: dict[str, Any]) -> None:
    reply = reply_of(client, event)
    if reply is None or reply.cancelled or not reply.speak:
        return
    pcm = pcm16_to_float(decode_pcm16(event.get("delta", "")))
    chunk = AudioChunk(reply.turn_id, pcm, WIRE_RATE_HZ, reply.samples // SAMPLES_PER_FRAME)
    reply.samples += pcm.size
    client.recording.reply(reply.turn_id, pcm)
    client.feeder.write(chunk)


def call_done(client: RealtimeEngine, event: dict[str, Any]) -> None:
    from app.realtime_link import report_call

    report_call(client, reply_of(client, event), event)


def done(client: RealtimeEngine, event: dict[str, Any]) -> None:
    reply = reply_of(client, event)
    if reply is None:
        aside_done(client, event)  # an out-of-band answer of ours (app/realtime_aside.py)
        return
    response = event.get("response") or {}
    status = response.get("status")
    del client.replies[reply.turn_id]
    if reply.speak:
        client.feeder.finish_turn(reply.turn_id)
    text = "".join(reply.text)
    if status == "failed":
        client.conversation.drop(reply.turn_id)
        failure = client.failure or EngineError(-1, "the engine failed on this turn (see its log)")
        client.failure = None
        client.signals.report(replace(failure, turn_id=reply.turn_id))
        return
    client.conversation.reply(reply.turn_id, text, interrupted=status == "cancelled")
    usage = response.get("usage") or {}
    stats = TurnStats(
        started_s=reply.started_s,
        first_text_s=reply.first_text_s,
        finished_s=time.perf_counter(),
        prompt_tokens=int(usage.get("input_tokens") or 0),
        text_tokens=int(usage.get("output_tokens") or 0),
        audio_samples=reply.samples,
        cancelled=status == "cancelled",
        tool_calls=reply.calls if status == "completed" else 0,
        speculative=reply.speculative,
    )
    client.signals.report(TurnFinished(reply.turn_id, stats))


REPLY_EVENTS: dict[str, Callable[[RealtimeEngine, dict[str, Any]], None]] = {
    "response.created": created,
    "response.output_item.added": item_added,
    "response.output_audio_transcript.delta": text_delta,
    "response.output_text.delta": text_delta,
    "response.output_audio.delta": audio_delta,
    "response.function_call_arguments.done": call_done,
    "response.done": done,
}
