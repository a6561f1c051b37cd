"""Out-of-band responses and deleting a waiting item, as the Realtime protocol has them.

`response.create` with `conversation: "none"` answers without adding anything to the
conversation; with audio out it is said (realtime/spoken_aside.py); in text with `input` (items
inline, or `item_reference`s to user items that wait for a response) on a context of its own,
without it after the conversation (model/aside.py). The app
uses it to hear a spoken yes or no to a tool: it commits the audio, asks for its words out of
band, then deletes the item with `conversation.item.delete`, so the conversation the model sees
goes on from the tool call as if nothing had been said between.
"""

from __future__ import annotations

import logging
from typing import Any

from realtime import spoken_aside
from realtime.items import assistant_item_json, merge_turns, user_turn
from realtime.wire import WireError, error_event, new_id

log = logging.getLogger(__name__)


def response_create(conversation: Any, event: dict[str, Any]) -> None:
    """`response.create`: out of band when `response.conversation` is "none", else as usual."""
    options = event.get("response")
    if isinstance(options, dict) and options.get("conversation") == "none":
        if options.get("output_modalities") == ["audio"]:
            spoken_aside.say_aside(conversation, options)
        else:
            _respond_aside(conversation, options)
    else:
        type(conversation).response_create(conversation, event)


def response_cancel(conversation: Any, event: dict[str, Any]) -> None:
    """`response.cancel`: of a spoken out-of-band response when its id is named, else as usual."""
    if not spoken_aside.cancel(conversation, event.get("response_id")):
        type(conversation).response_cancel(conversation, event)


def item_delete(conversation: Any, event: dict[str, Any]) -> None:
    """`conversation.item.delete` of a user item still waiting for a response (what reached the
    engine stays: the engine's context is cut only by truncation)."""
    item_id = event.get("item_id")
    waiting = [p for p in conversation.pending if p.item_id == item_id]
    if not waiting:
        raise WireError(
            "only a user item that waits for a response can be deleted",
            code="item_delete_invalid_item_id",
            param="item_id",
        )
    conversation.pending = [p for p in conversation.pending if p.item_id != item_id]
    conversation.send({"type": "conversation.item.deleted", "event_id": new_id("event"), "item_id": item_id})


def _respond_aside(conversation: Any, options: dict[str, Any]) -> None:
    if options.get("output_modalities") not in (None, ["text"]):
        raise WireError('output_modalities must be ["audio"] or ["text"]', param="response.output_modalities")
    items = options.get("input")
    if items is not None:
        turn = _input_turn(conversation, items)
    elif conversation.pending:
        turn = merge_turns([p.turn for p in conversation.pending])
    else:
        raise WireError("nothing to answer: give input, or commit audio or create a user item first")
    instructions = options.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise WireError("instructions must be a string", param="response.instructions")
    metadata = options.get("metadata") if isinstance(options.get("metadata"), dict) else None
    response = {
        "id": new_id("resp"),
        "object": "realtime.response",
        "conversation_id": None,
        "output_modalities": ["text"],
        "metadata": metadata,
    }
    out = conversation.send
    out(
        {
            "type": "response.created",
            "event_id": new_id("event"),
            "response": {**response, "status": "in_progress", "output": []},
        }
    )
    own_context = items is not None

    def run() -> None:
        try:
            text = conversation.engine.answer_aside(
                turn, in_conversation=not own_context, instructions=instructions if own_context else None
            )
        except Exception as error:
            log.info("out-of-band response %s failed: %s", response["id"], error)
            out(error_event(f"the out-of-band response failed: {error}", "engine_error", kind="server_error"))
            out(
                {
                    "type": "response.done",
                    "event_id": new_id("event"),
                    "response": {**response, "status": "failed", "output": []},
                }
            )
            return
        _send_text(out, response, text)

    conversation._locked(run)


def _input_turn(conversation: Any, items: Any) -> Any:
    """The response's `input` as one user turn: references to waiting user items, and user messages."""
    if not isinstance(items, list) or not items:
        raise WireError("input must be a non-empty list of items", param="response.input")
    turns = []
    for i, item in enumerate(items):
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "item_reference":
            found = [p.turn for p in conversation.pending if p.item_id == item.get("id")]
            if not found:
                raise WireError(
                    "only user items that wait for a response can be referenced",
                    param=f"response.input[{i}].id",
                )
            turns.append(found[0])
        elif kind in ("message", None) and isinstance(item, dict) and item.get("role") == "user":
            turns.append(user_turn(item.get("content")))
        else:
            raise WireError(
                "input items must be user messages or item references", param=f"response.input[{i}]"
            )
    return merge_turns(turns)


def _send_text(out: Any, response: dict[str, Any], text: str) -> None:
    """The answer as one text item: added, its text, done, and `response.done` holding it."""
    item_id = new_id("item")
    where = {"response_id": response["id"], "item_id": item_id, "output_index": 0, "content_index": 0}
    item = assistant_item_json(item_id, "", audio=False, status="in_progress")
    item["content"] = []

    def send(kind: str, **fields: Any) -> None:
        out({"type": kind, "event_id": new_id("event"), **fields})

    send("response.output_item.added", response_id=response["id"], output_index=0, item=item)
    send("response.content_part.added", **where, part={"type": "text", "text": ""})
    send("response.output_text.delta", **where, delta=text)
    send("response.output_text.done", **where, text=text)
    send("response.content_part.done", **where, part={"type": "text", "text": text})
    final = assistant_item_json(item_id, text, audio=False, status="completed")
    send("response.output_item.done", response_id=response["id"], output_index=0, item=final)
    send("response.done", response={**response, "status": "completed", "output": [final]})
