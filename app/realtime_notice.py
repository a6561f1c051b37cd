"""A spoken notice over the Realtime protocol (realtime/spoken_aside.py is the server's side): an
out-of-band response with audio (`conversation: "none"`, `output_modalities: ["audio"]`, `input:
[]`, the request as its `instructions`). Its audio goes to the speaker under a turn id of its own
(`notice_turn`: negative, so it is no conversation's turn); nothing of it enters the client's
conversation. A server that cannot say it answers with a failed response: the app then keeps to
the window, and says so once in the log."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.realtime_aside import aside_events
from events import AudioChunk
from realtime.wire import SAMPLES_PER_FRAME, WIRE_RATE_HZ, decode_pcm16, new_id, pcm16_to_float

log = logging.getLogger(__name__)

NOTICE_KEY = "omnidesk_notice"  # our metadata key: the asker's key of the notice


def notice_turn(key: int) -> int:
    """The speaker's turn id of notice `key`: below every conversation turn's."""
    return -key


@dataclass
class Notice:
    key: int
    response_id: str | None = None
    samples: int = 0
    cancelled: bool = False


def notice_events(client: Any, key: int, request: str) -> list[dict[str, Any]]:
    """The out-of-band request for notice `key` (none once the server has said it cannot)."""
    if client.notices_refused:
        return []
    client.notices[key] = Notice(key)
    response = {
        "conversation": "none",
        "output_modalities": ["audio"],
        "instructions": request,
        "input": [],
        "metadata": {NOTICE_KEY: str(key)},
    }
    return [{"type": "response.create", "event_id": new_id("event"), "response": response}]


def unnotice_events(client: Any, key: int) -> list[dict[str, Any]]:
    """Stop notice `key`: its audio is cut at the speaker, and the server told when it is running."""
    notice = client.notices.get(key)
    speech = client.feeder.speech
    if speech is not None and hasattr(speech, "flush"):
        speech.flush(notice_turn(key))
    if notice is None:
        return []
    notice.cancelled = True
    if notice.response_id is None:
        return []  # its `response.created` sends the cancel
    return [{"type": "response.cancel", "event_id": new_id("event"), "response_id": notice.response_id}]


def on_notice_event(client: Any, event: dict[str, Any]) -> bool:
    """Take a server event of a notice of ours (True), or leave it (False)."""
    response = event.get("response") or {}
    key = (response.get("metadata") or {}).get(NOTICE_KEY)
    if key is not None and event.get("type") == "response.created":
        notice = client.notices.get(int(key))
        if notice is not None:
            notice.response_id = response.get("id")
            if notice.cancelled:
                client.send(
                    {
                        "type": "response.cancel",
                        "event_id": new_id("event"),
                        "response_id": notice.response_id,
                    }
                )
        return True
    response_id = event.get("response_id") or response.get("id")
    notice = next((n for n in client.notices.values() if n.response_id == response_id), None)
    if notice is None:
        return False
    kind = event.get("type")
    if kind == "response.output_audio.delta" and not notice.cancelled:
        pcm = pcm16_to_float(decode_pcm16(event.get("delta", "")))
        turn_id = notice_turn(notice.key)
        client.feeder.write(AudioChunk(turn_id, pcm, WIRE_RATE_HZ, notice.samples // SAMPLES_PER_FRAME))
        notice.samples += pcm.size
    elif kind == "response.done":
        del client.notices[notice.key]
        client.feeder.finish_turn(notice_turn(notice.key))
        if response.get("status") == "failed":
            client.notices_refused = True
            log.warning("the engine could not say that a tool still runs; the window shows it instead")
    return True


def notice_refused(client: Any, event: dict[str, Any]) -> bool:
    """An `error` answering our notice request (a server that has no spoken out-of-band response):
    notices stop, said once in the log (True), or the error is someone else's (False)."""
    error = event.get("error") or {}
    if error.get("param") not in ("response.output_modalities", "response.instructions", "response.input"):
        return False
    if not client.notices or all(n.response_id is not None for n in client.notices.values()):
        return False
    client.notices.clear()
    client.notices_refused = True
    log.warning(
        "the engine cannot say that a tool still runs (%s); the window shows it instead", error.get("message")
    )
    return True


# the link's commands for what is out of the conversation: a yes or no heard aside, a notice, its cancel
OUT_OF_BAND: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "aside": aside_events,
    "notice": notice_events,
    "unnotice": unnotice_events,
}
