"""One connection's conversation: the Realtime client events it accepts, and the engine it drives.

Protocol state (the input buffer, items waiting for a response, the active response) lives on the
server's event loop; every engine call runs in order on the conversation's own job thread, under
the model's lock. `response.cancel` only sets the reply's cancel flag, which the engine checks at
every decode step. Server events go out through `send`, which may block the job thread when the
client reads slowly (the server bounds how long).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from realtime import aside
from realtime.host import ModelHost
from realtime.input_buffer import InputBuffer
from realtime.items import (
    UserItem,
    assistant_item_json,
    item_events,
    merge_turns,
    reply_text,
    tool_output_turn,
    user_item_json,
    user_turn,
)
from realtime.reply import Response, run_response
from realtime.session_config import SessionConfig
from realtime.speculation import Gate, Speculation
from realtime.wire import MAX_PENDING_ITEMS, SPECULATE, SPECULATIVE, WireError, heard_samples, new_id
from worker_thread import JobThread

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], None]


@dataclass(eq=False)
class Conversation:
    host: ModelHost
    send: Send
    config: SessionConfig = field(init=False)
    buffer: InputBuffer = field(default_factory=InputBuffer)
    pending: list[UserItem] = field(default_factory=list)
    active: Response | None = None
    last_item_id: str | None = None
    last_reply_item: str | None = None
    replies: int = 0
    speculation: Speculation | None = None
    asides: dict[str, Response] = field(default_factory=dict)  # spoken out-of-band responses running

    def __post_init__(self) -> None:
        self.config = SessionConfig.initial(self.host)
        self.engine: Any = None
        self.jobs = JobThread("realtime-engine")
        self.jobs.submit(self._make_engine)

    def _make_engine(self) -> None:
        self.engine = self.host.new_engine(self.config)

    def close(self) -> None:
        for response in [self.active, *self.asides.values()]:
            if response is not None:
                response.cancel.set()
        self.jobs.stop(timeout_s=0.5)

    def _locked(self, job: Callable[[], None]) -> None:
        def run() -> None:
            with self.host.lock:
                job()

        self.jobs.submit(run)

    # -- client events (on the event loop) -------------------------------------------------------

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        handler = HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise WireError(f"unknown or unsupported event type {kind!r}", code="unknown_event")
        handler(self, event)

    def session_update(self, event: dict[str, Any]) -> None:
        self._drop_speculation()
        updated = self.config.updated(event.get("session"), self.host)

        def apply() -> None:
            self.engine.configure(**updated.engine_changes())
            self.send({"type": "session.updated", "event_id": new_id("event"), "session": updated.json()})

        self.config = updated
        self._locked(apply)

    def audio_append(self, event: dict[str, Any]) -> None:
        self._drop_speculation()
        self.buffer.append_audio(event.get("audio"))
        self._listen()

    def frame_append(self, event: dict[str, Any]) -> None:
        self._drop_speculation()
        self.buffer.append_frame(event)
        self._listen()

    def _listen(self) -> None:
        piece = self.buffer.next_piece()
        if piece is not None:
            self._locked(lambda: self.engine.listen(piece.audio, piece.frames, piece.fps))

    def audio_commit(self, event: dict[str, Any]) -> None:
        if self.buffer.empty:
            raise WireError("the input audio buffer is empty", code="input_audio_buffer_commit_empty")
        spec = self.speculation
        turn, self.buffer = self.buffer.turn(), InputBuffer()
        item_id = _str(event.get("item_id")) or new_id("item")
        if spec is not None and spec.matches(int(turn.audio.size if turn.audio is not None else 0), 0):
            turn, item_id, spec.committed = spec.response.turn, spec.user_item_id, True
        else:
            self._drop_speculation()
        self._add_user(UserItem(item_id, turn))
        self.send(
            {
                "type": "input_audio_buffer.committed",
                "event_id": new_id("event"),
                "previous_item_id": self.last_item_id,
                "item_id": item_id,
            }
        )
        self._announce(user_item_json(item_id, turn))

    def audio_clear(self, _event: dict[str, Any]) -> None:
        self._drop_speculation()
        self.buffer = InputBuffer()
        self._locked(lambda: self.engine.abandon_turn())
        self.send({"type": "input_audio_buffer.cleared", "event_id": new_id("event")})

    def item_create(self, event: dict[str, Any]) -> None:
        self._drop_speculation()
        item = event.get("item")
        if isinstance(item, dict) and item.get("type") == "function_call_output":
            self._add_tool_output(item)
            return
        if not isinstance(item, dict) or item.get("type", "message") != "message":
            raise WireError("only message and function_call_output items are supported", param="item.type")
        role = item.get("role")
        item_id = _str(item.get("id")) or new_id("item")
        if role == "user":
            turn = user_turn(item.get("content"))
            self._add_user(UserItem(item_id, turn))
            self._announce(user_item_json(item_id, turn))
        elif role == "assistant":
            self._restore_reply(item_id, reply_text(item.get("content")))
        else:
            raise WireError(f"role {role!r} items are not supported (instructions go in session.update)")

    def _add_tool_output(self, item: dict[str, Any]) -> None:
        """A call's result: it waits with the user items for `response.create`, which goes on with it."""
        made = self.active.calls if self.active is not None else []
        turn = tool_output_turn(item, {c["call_id"]: c["name"] for c in made})
        item_id = _str(item.get("id")) or new_id("item")
        self._add_user(UserItem(item_id, turn))
        result = turn.tool_results[0]
        shown = {
            "id": item_id,
            "object": "realtime.item",
            "type": "function_call_output",
            "status": "completed",
        }
        self._announce({**shown, "call_id": result.call_id, "output": result.output})

    def _add_user(self, item: UserItem) -> None:
        if len(self.pending) >= MAX_PENDING_ITEMS:
            raise WireError(f"over {MAX_PENDING_ITEMS} items wait for a response", code="too_many_items")
        self.pending.append(item)

    def _announce(self, item: dict[str, Any]) -> None:
        for out in item_events(item, self.last_item_id):
            self.send(out)
        self.last_item_id = item["id"]

    def _restore_reply(self, item_id: str, text: str) -> None:
        """An earlier reply, given back by a client restoring its conversation into this engine."""
        if not self.pending:
            raise WireError("an assistant item must follow the user item it answers")
        if self.active is not None and not self.active.cancel.is_set():  # a cancelled one ends first
            raise WireError("a response is in progress", code="conversation_already_has_active_response")
        turn, self.pending = merge_turns([p.turn for p in self.pending]), []
        self.replies += 1
        number = self.replies
        self._locked(lambda: self.engine.remember_exchange(turn, text, number))
        self.last_reply_item = item_id
        self._announce(assistant_item_json(item_id, text, audio=False, status="completed"))

    def item_truncate(self, event: dict[str, Any]) -> None:
        item_id, end_ms = event.get("item_id"), event.get("audio_end_ms")
        if not isinstance(end_ms, int) or end_ms < 0:
            raise WireError("audio_end_ms must be a non-negative integer", param="audio_end_ms")
        if item_id != self.last_reply_item:
            raise WireError("only the last reply can be truncated", code="item_truncate_invalid_item_id")
        self._drop_speculation()  # it was computed after the whole reply, which the user did not hear

        def truncate() -> None:
            try:
                kept = self.engine.truncate_last_reply(heard_samples(end_ms))
            except ValueError as error:
                self.send(_error(str(error), "item_truncate_invalid_item_id", event))
                return
            self.send(
                {
                    "type": "conversation.item.truncated",
                    "event_id": new_id("event"),
                    "item_id": item_id,
                    "content_index": 0,
                    "audio_end_ms": end_ms,
                    "transcript": kept,  # ours: the text of what was heard, as the engine keeps it
                }
            )

        self._locked(truncate)

    def response_create(self, event: dict[str, Any]) -> None:
        if self.active is not None and not self.active.cancel.is_set():
            raise WireError("a response is in progress", code="conversation_already_has_active_response")
        if not self.pending:
            raise WireError("nothing to answer: commit audio or create a user item first")
        options = event.get("response")
        options = options if isinstance(options, dict) else {}
        if self._promote(options):
            return
        self._drop_speculation()
        turn = merge_turns([p.turn for p in self.pending])
        spoken = next((p.item_id for p in reversed(self.pending) if p.turn.audio is not None), None)
        self.pending = []
        self.replies += 1
        response = Response(
            id=new_id("resp"),
            item_id=new_id("item"),
            number=self.replies,
            turn=turn,
            audio=self.config.response_speaks(options.get("output_modalities"), self.host),
            metadata=options.get("metadata") if isinstance(options.get("metadata"), dict) else None,
            audio_item_id=spoken,
        )
        self.active = response
        self.last_reply_item = response.item_id
        self.send(
            {
                "type": "response.created",
                "event_id": new_id("event"),
                "response": response.json("in_progress"),
            }
        )

        def run() -> None:
            try:
                run_response(self.engine, response, self.send)
            except ConnectionError as error:
                log.info("response %s stopped: %s", response.id, error)
            finally:
                if self.active is response:
                    self.active = None

        self.last_item_id = response.item_id
        self._locked(run)

    # -- a response computed at the user's pause (realtime/speculation.py) ----------------------------

    def speculate(self, _event: dict[str, Any]) -> None:
        """Compute the response to the buffer as it is now, holding its events. Ignored when it
        could not be kept (a response is running, items wait, the turn has camera frames)."""
        self._drop_speculation()
        if self.active is not None or self.pending or self.buffer.frames or self.buffer.empty:
            return
        turn = self.buffer.turn()
        self._listen()
        response = Response(
            id=new_id("resp"),
            item_id=new_id("item"),
            number=self.replies + 1,
            turn=turn,
            audio=self.config.response_speaks(None, self.host),
            audio_item_id=new_id("item"),
        )
        assert response.audio_item_id is not None and turn.audio is not None
        spec = Speculation(response, Gate(self.send), int(turn.audio.size), 0, response.audio_item_id)
        self.speculation = spec

        def run() -> None:
            from model.speculation import checkpoint

            spec.point = checkpoint(self.engine)
            try:
                run_response(self.engine, response, spec.gate.send)
            except ConnectionError as error:
                log.info("speculative response %s stopped: %s", response.id, error)
            finally:
                spec.gate.finish()
                if self.active is response:
                    self.active = None

        self._locked(run)

    def _promote(self, options: dict[str, Any]) -> bool:
        """Answer `response.create` with the speculative response, if it was computed from exactly
        the committed turn and nothing else waits."""
        spec = self.speculation
        if spec is None or not spec.committed or [p.item_id for p in self.pending] != [spec.user_item_id]:
            return False
        if self.config.response_speaks(options.get("output_modalities"), self.host) != spec.response.audio:
            return False
        self.speculation, self.pending = None, []
        response = spec.response
        metadata = options.get("metadata")
        response.metadata = metadata if isinstance(metadata, dict) else None
        self.replies += 1
        self.active = response
        self.last_reply_item = self.last_item_id = response.item_id
        self.send(
            {
                "type": "response.created",
                "event_id": new_id("event"),
                "response": response.json("in_progress"),
                SPECULATIVE: True,
            }
        )
        if spec.gate.open(response.metadata) and self.active is response:
            self.active = None
        return True

    def _drop_speculation(self) -> None:
        """Stop the speculative response and rewind the engine to before it (on the job thread,
        after it: jobs run in order)."""
        spec, self.speculation = self.speculation, None
        if spec is None:
            return
        spec.response.cancel.set()
        spec.gate.drop()

        def rewind() -> None:
            from model.speculation import rewind

            if spec.point is not None:
                rewind(self.engine, spec.point)

        self._locked(rewind)

    def response_cancel(self, event: dict[str, Any]) -> None:
        active, wanted = self.active, event.get("response_id")
        if active is None or (wanted is not None and wanted != active.id):
            raise WireError("there is no active response to cancel", code="response_cancel_not_active")
        active.cancel.set()


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _error(message: str, code: str, event: dict[str, Any]) -> dict[str, Any]:
    from realtime.wire import error_event

    event_id = event.get("event_id")
    return error_event(message, code, event_id=event_id if isinstance(event_id, str) else None)


HANDLERS: dict[str, Callable[[Conversation, dict[str, Any]], None]] = {
    "session.update": Conversation.session_update,
    "input_audio_buffer.append": Conversation.audio_append,
    "input_audio_buffer.commit": Conversation.audio_commit,
    "input_audio_buffer.clear": Conversation.audio_clear,
    "input_video_frame.append": Conversation.frame_append,
    "conversation.item.create": Conversation.item_create,
    "conversation.item.truncate": Conversation.item_truncate,
    "response.create": aside.response_create,  # out of band when conversation is "none"
    "conversation.item.delete": aside.item_delete,
    "response.cancel": aside.response_cancel,  # a spoken out-of-band response named by its id
    SPECULATE: Conversation.speculate,
}
