"""An answer heard aside over the Realtime protocol (realtime/aside.py is the server's side): the
spoken turn's audio, already streamed into the input buffer while the user spoke, is committed as
an item, answered by an out-of-band response (`conversation: "none"`, text, no system turn, its
input that item and the request), and the item deleted, so nothing of it stays in the conversation."""

from __future__ import annotations

from typing import Any

import numpy as np

from events import AsideAnswer
from realtime.wire import new_id

ASIDE_KEY = "omnidesk_aside"  # our metadata key: the asker's key of the out-of-band response


def aside_events(client: Any, key: int, turn: Any) -> list[dict[str, Any]]:
    """The rest of the turn's audio, its commit, the out-of-band request and the item's deletion."""
    events: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = [{"type": "input_text", "text": turn.text}] if turn.text else []
    refs: list[dict[str, Any]] = []
    if turn.audio is not None:
        audio = np.asarray(turn.audio).reshape(-1)
        events += client.input.pieces(audio[client.input.samples :])
        events += client.input.rest()
        item_id = new_id("item")
        events.append({"type": "input_audio_buffer.commit", "event_id": new_id("event"), "item_id": item_id})
        refs.append({"type": "item_reference", "id": item_id})
    client.input.reset()
    response = {
        "conversation": "none",
        "output_modalities": ["text"],
        "instructions": "",
        "input": [*refs, {"type": "message", "role": "user", "content": content}] if content else refs,
        "metadata": {ASIDE_KEY: str(key)},
    }
    events.append({"type": "response.create", "event_id": new_id("event"), "response": response})
    events += [
        {"type": "conversation.item.delete", "event_id": new_id("event"), "item_id": r["id"]} for r in refs
    ]
    return events


def aside_done(client: Any, event: dict[str, Any]) -> bool:
    """Report the answer of an out-of-band response of ours (True), or leave the event (False)."""
    response = event.get("response") or {}
    key = (response.get("metadata") or {}).get(ASIDE_KEY)
    if key is None:
        return False
    texts = [
        part.get("text", "")
        for item in response.get("output") or []
        for part in item.get("content") or []
        if part.get("type") == "output_text"
    ]
    failed = "" if response.get("status") == "completed" else "the engine could not hear it (see its log)"
    client.signals.report(AsideAnswer(int(key), "".join(texts).strip(), failed))
    return True
