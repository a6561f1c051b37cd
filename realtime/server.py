"""`omnidesk serve`: the engine behind `WS /v1/realtime` (the `websockets` library does the framing,
limits and keep-alive; see README, "The engine server").

The port opens at once and the model loads in the background: a client that connects meanwhile
gets `omnidesk.model_status` events, then `session.created` when the model is ready (or an
`error` and a close when it failed). Safe by default: loopback only unless told otherwise, a key
required off loopback (compared in constant time, never logged), bounded message sizes and
buffers, and a malformed event answered with an `error` event, never a crash.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import json
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from realtime.host import LoadOptions, ModelHost, load_host
from realtime.wire import (
    MAX_EVENT_BYTES,
    MODEL_STATUS,
    REALTIME_PATH,
    WireError,
    error_event,
    new_id,
)

log = logging.getLogger(__name__)

OUTGOING_EVENTS = 256  # server events queued for one client before the engine waits for it
SEND_TIMEOUT_S = 30.0  # a client that reads nothing for this long is disconnected
MAX_CONNECTIONS = 8


@dataclass
class ServerState:
    """The model's load state, shared by every connection on the event loop."""

    options: LoadOptions
    api_key: str | None
    host: ModelHost | None = None
    failure: str | None = None
    status: str = "starting"
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    connections: int = 0
    conversations: set[Any] = field(default_factory=set)  # open ones (what /health counts; tests look in)

    def status_event(self) -> dict[str, Any]:
        state = "ready" if self.host else "failed" if self.failure else "loading"
        event: dict[str, Any] = {
            "type": MODEL_STATUS,
            "event_id": new_id("event"),
            "state": state,
            "message": self.failure or self.status,
        }
        if self.host is not None:
            event["model"] = self.host.info
        return event

    async def update(self, **changes: Any) -> None:
        async with self.changed:
            for key, value in changes.items():
                setattr(self, key, value)
            self.changed.notify_all()


async def load_in_background(state: ServerState) -> None:
    loop = asyncio.get_running_loop()

    def say(message: str) -> None:
        asyncio.run_coroutine_threadsafe(state.update(status=message), loop)

    from model.loading import ModelLoadError

    try:
        host = await asyncio.to_thread(load_host, state.options, say)
    except ModelLoadError as error:
        await state.update(failure=str(error))
        return
    except Exception as error:
        log.exception("loading failed")
        await state.update(failure=f"loading failed: {type(error).__name__}: {error}")
        return
    await state.update(host=host, status="ready")
    log.info("model ready: %s", host.info.get("source"))


def authorized(state: ServerState, headers: Any) -> bool:
    if state.api_key is None:
        return True
    given = headers.get("Authorization", "")
    scheme, _, token = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), state.api_key.encode())


def checker(state: ServerState) -> Any:
    """The handshake's gate: the path, the key, the connection limit; `/health` answers plainly."""

    def process_request(connection: Any, request: Any) -> Any:
        path = request.path.split("?", 1)[0]
        if path == "/health":
            return connection.respond(http.HTTPStatus.OK, state.status_event()["state"] + "\n")
        if path != REALTIME_PATH:
            return connection.respond(
                http.HTTPStatus.NOT_FOUND, f"not found; the endpoint is {REALTIME_PATH}\n"
            )
        if not authorized(state, request.headers):
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong API key\n")
        if state.connections >= MAX_CONNECTIONS:
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "too many connections\n")
        return None

    return process_request


class Outbox:
    """Server events for one client, bounded. The engine thread hands events over without waiting
    for the event loop (a round trip per event cost a GIL hand-over each); it waits only when the
    queue is full, up to SEND_TIMEOUT_S, and a client that stops reading is disconnected."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue(OUTGOING_EVENTS)
        self.ready = asyncio.Event()
        self.stalled = asyncio.Event()
        self.closed = False
        self._loop_thread = threading.get_ident()

    def close(self) -> None:
        """The connection is gone: a waiting engine thread is released and later sends fail at once
        (so a reply for nobody stops at its next event instead of holding the model's lock)."""
        self.closed = True
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                return

    def send(self, event: dict[str, Any]) -> None:
        on_loop = threading.get_ident() == self._loop_thread
        if self.closed:
            if on_loop:
                return
            raise ConnectionError("the client is gone")
        try:
            self.queue.put(event, block=not on_loop, timeout=None if on_loop else SEND_TIMEOUT_S)
        except queue.Full:
            if on_loop:
                self.stalled.set()
                return
            self.loop.call_soon_threadsafe(self.stalled.set)
            raise ConnectionError("the client stopped reading") from None
        if on_loop:
            self.ready.set()
        else:
            self.loop.call_soon_threadsafe(self.ready.set)

    async def pump(self, ws: Any) -> None:
        while True:
            await self.ready.wait()
            self.ready.clear()
            while True:
                try:
                    event = self.queue.get_nowait()
                except queue.Empty:
                    break
                await asyncio.wait_for(ws.send(json.dumps(event)), SEND_TIMEOUT_S)


async def wait_until_loaded(state: ServerState, ws: Any) -> ModelHost | None:
    """Tell the client how loading goes until the model is ready (or failed)."""
    last = None
    async with state.changed:
        while True:
            event = state.status_event()
            if event["message"] != last:
                await ws.send(json.dumps(event))
                last = event["message"]
            if state.host is not None or state.failure is not None:
                break
            await state.changed.wait()
    if state.failure is not None:
        await ws.send(json.dumps(error_event(state.failure, "model_load_failed", kind="server_error")))
        return None
    return state.host


async def converse(state: ServerState, ws: Any) -> None:
    from realtime.conversation import Conversation

    host = await wait_until_loaded(state, ws)
    if host is None:
        return
    outbox = Outbox(asyncio.get_running_loop())
    conversation = Conversation(host, outbox.send)
    state.conversations.add(conversation)
    outbox.send(
        {"type": "session.created", "event_id": new_id("event"), "session": conversation.config.json()}
    )
    pump = asyncio.create_task(outbox.pump(ws))
    stalled = asyncio.create_task(outbox.stalled.wait())
    reader = asyncio.create_task(read_events(ws, conversation, outbox))
    try:
        await asyncio.wait({pump, stalled, reader}, return_when=asyncio.FIRST_COMPLETED)
        if stalled.done():
            log.warning("closing a connection whose client stopped reading")
    finally:
        for task in (pump, stalled, reader):
            task.cancel()
        state.conversations.discard(conversation)
        outbox.close()
        conversation.close()


async def read_events(ws: Any, conversation: Any, outbox: Outbox) -> None:
    async for message in ws:
        event_id = None
        try:
            if isinstance(message, bytes):
                raise WireError("events are JSON text messages, not binary", code="invalid_json")
            try:
                event = json.loads(message)
            except json.JSONDecodeError as error:
                raise WireError(f"not valid JSON: {error}", code="invalid_json") from None
            if not isinstance(event, dict):
                raise WireError("an event is a JSON object with a type", code="invalid_event")
            event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
            conversation.handle(event)
        except WireError as error:
            outbox.send(error_event(str(error), error.code, event_id=event_id, param=error.param))
        except Exception as error:
            log.exception("handling a client event failed")
            outbox.send(
                error_event(
                    f"{type(error).__name__}: {error}", "server_error", event_id=event_id, kind="server_error"
                )
            )


async def run_server(state: ServerState, host: str, port: int, ready: Any = None) -> None:
    """Serve until cancelled; `ready(port)` is called once the socket listens."""
    from websockets.asyncio.server import serve

    async def handler(ws: Any) -> None:
        state.connections += 1
        try:
            await converse(state, ws)
        finally:
            state.connections -= 1

    async with serve(
        handler,
        host,
        port,
        process_request=checker(state),
        max_size=MAX_EVENT_BYTES,
        max_queue=16,
        write_limit=2**20,
        server_header="omnidesk",
    ) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        loader = asyncio.create_task(load_in_background(state)) if state.host is None else None
        if ready is not None:
            ready(bound)
        try:
            await asyncio.Future()
        finally:
            if loader is not None:
                loader.cancel()
