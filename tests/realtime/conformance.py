"""Every event checked against the `openai` package's typed Realtime models (GA names): a client
and a schema that nobody here wrote. Our two documented extension events are the only exceptions."""

from __future__ import annotations

import json
import typing
from typing import Any

from realtime.wire import EXTENSION_EVENTS


def _models(union: Any) -> dict[str, Any]:
    members = (
        typing.get_args(typing.get_args(union)[0]) if typing.get_origin(union) is typing.Annotated else ()
    )
    models: dict[str, Any] = {}
    for model in members:
        literal = model.model_fields["type"].annotation
        for name in typing.get_args(literal):
            models[name] = model
    return models


def _tables() -> tuple[dict[str, Any], dict[str, Any]]:
    from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent

    return _models(RealtimeClientEvent), _models(RealtimeServerEvent)


CLIENT, SERVER = _tables()


def check(event: dict[str, Any], side: str) -> None:
    """Raise if `event` is not a valid GA event of `side` ("client" or "server")."""
    kind = event.get("type")
    if kind in EXTENSION_EVENTS:
        return
    table = CLIENT if side == "client" else SERVER
    assert kind in table, f"{side} event type {kind!r} is not in the Realtime protocol"
    table[kind].model_validate(event, strict=False)


def recv_until(ws: Any, last: str) -> list[dict[str, Any]]:
    """Server events up to the first of type `last`, each checked against the protocol's models."""
    events = []
    while True:
        event = json.loads(ws.recv(timeout=300))
        check(event, "server")
        assert event["type"] != "error", event
        events.append(event)
        if event["type"] == last:
            return events
