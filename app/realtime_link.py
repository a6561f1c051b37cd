"""The link to the engine, run on `RealtimeEngine`'s link thread: connect (starting the app's own
engine process when there is no URL), wait for `session.created`, restore the conversation into a
new engine, send the session's commands in order, and when the link breaks, say so, fail the
replies in flight and come back with back-off."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from app.engine_client import ModelInfo
from app.engine_process import EngineStartError, LocalEngine
from app.realtime_input import replay_events
from app.realtime_notice import OUT_OF_BAND
from events import (
    EngineConnection,
    EngineError,
    EngineStatus,
    LoadFailed,
    ModelLoaded,
    ReplyTruncated,
    ToolCallRequested,
    TurnFinished,
)
from model.tool_format import call_text, tool_response_text
from realtime.wire import API_KEY_ENV, audio_end_ms, new_id

if TYPE_CHECKING:
    from app.realtime_client import RealtimeEngine

log = logging.getLogger(__name__)

BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)


def run_link(client: RealtimeEngine) -> None:
    failures = 0
    while not client.stopping:
        generation = client.generation
        moved = _moved(client, generation)
        if client.request is None:
            _wait(client, moved)
            continue
        outcome = _one_link(client, generation)
        if outcome == "stop":
            _wait(client, moved)
            failures = 0
            continue
        if outcome == "fresh":
            continue
        failures = 0 if outcome == "was_up" else failures + 1
        _wait(client, moved, BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])


def _moved(client: RealtimeEngine, generation: int) -> Any:
    """Whether a new load or a stop came since `generation` (the link then starts over)."""
    return lambda: client.generation != generation or client.stopping


def _wait(client: RealtimeEngine, done: Any, timeout_s: float | None = None) -> None:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with client.wake:
        while not done():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            client.wake.wait(0.5 if left is None else min(0.5, left))


def _endpoint(client: RealtimeEngine) -> tuple[str, str | None]:
    if client.url:
        return client.url, client.api_key or os.environ.get(API_KEY_ENV) or None
    local = client.local
    if local is None or not local.alive or local.serve_args != _args(client):
        if local is not None:
            local.stop()
        client.signals.report(EngineStatus("starting the engine process"))
        local = client.local = LocalEngine(_args(client))
        return local.start(), local.api_key
    return local.url, local.api_key


def _args(client: RealtimeEngine) -> list[str]:
    from app.engine_process import serve_args

    assert client.request is not None
    return serve_args(client.request)


def _one_link(client: RealtimeEngine, generation: int) -> str:
    """One connection's life: "stop" (nothing to retry), "fresh" (reconnect now for a new
    conversation), "was_up" or "failed" (retry after a back-off)."""
    try:
        url, key = _endpoint(client)
        ws = client.connect(url, key)
    except EngineStartError as error:
        client.signals.report(LoadFailed(str(error)))
        return "stop"
    except Exception as error:
        _lost(client, f"cannot reach the engine at {client.url or 'its local port'}: {error}", first=True)
        return "failed"
    client.ws = ws
    client.connected.clear()
    reader_done = threading.Event()
    threading.Thread(target=_read, args=(client, ws, reader_done), name="engine-reader", daemon=True).start()
    _wait(
        client, lambda: client.connected.is_set() or reader_done.is_set() or client.generation != generation
    )
    if not client.connected.is_set():
        _close(client, ws)
        if client.generation != generation or client.stopping:
            return "stop"
        if client.model_info is None and client.local is not None and not client.local.alive:
            client.signals.report(
                LoadFailed(f"the engine process ended while loading: {client.local.output_tail()}")
            )
            return "stop"
        return "stop" if _load_failed(client) else "failed"
    try:
        _begin(client)
        _serve_commands(client, generation, reader_done)
    except (ConnectionError, OSError) as error:
        log.info("engine link broke: %s", error)
    except Exception as error:  # websockets' ConnectionClosed and the like
        log.info("engine link broke: %s", error)
    _close(client, ws)
    if client.generation != generation or client.stopping:
        return "stop"
    if client.fresh:
        _forget(client)
        return "fresh"  # closed on purpose for a new conversation: reconnect at once, nothing lost
    _lost(client, _why(client))
    return "was_up"


def _load_failed(client: RealtimeEngine) -> bool:
    return client.model_info is None and client.load_error is not None


def _begin(client: RealtimeEngine) -> None:
    """A new engine: the first of this load is announced; a later one gets the conversation back."""
    request = client.request
    assert request is not None
    info = client.model_info or ModelInfo.of({"source": client.url or request.source, "can_speak": True})
    first = not client.announced
    if first:
        client.voice, client.prompt = request.speaker, request.system_prompt
    speak = request.speak and info.can_speak
    session: dict[str, Any] = {"type": "realtime", "output_modalities": ["audio"] if speak else ["text"]}
    if client.prompt:
        session["instructions"] = client.prompt
    # `transcription: null` turns the user's words off; an empty object asks for them
    session["audio"] = {"input": {"transcription": {} if request.transcribe else None}}
    if speak and client.voice:
        session["audio"]["output"] = {"voice": client.voice}
    session["tools"] = tools_json(client.tools)
    client.send({"type": "session.update", "event_id": new_id("event"), "session": session})
    client.input.reset()
    client.speak = speak
    if first:
        client.announced = True
        client.model_info = info
        client.signals.report(ModelLoaded(info))
        return
    if client.fresh:
        client.fresh = False
        return
    for event in replay_events(client.conversation.answered()):
        client.send(event)
    client.signals.report(EngineConnection(False, "The engine is back; the conversation was restored."))


def _serve_commands(client: RealtimeEngine, generation: int, reader_done: threading.Event) -> None:
    while True:
        with client.wake:
            while not client.commands and not reader_done.is_set() and client.generation == generation:
                client.wake.wait(0.5)
            if reader_done.is_set() or client.generation != generation or client.stopping:
                return
            command = client.commands.popleft()
        try:
            _execute(client, command)
        except Exception:
            with client.wake:
                client.commands.appendleft(command)
            raise


def _execute(client: RealtimeEngine, command: tuple[Any, ...]) -> None:
    from app.realtime_reply import PendingReply

    kind, *args = command
    if kind == "listen":
        for event in client.input.pieces(*args):
            client.send(event)
    elif kind == "speculate":
        for event in client.input.speculate():
            client.send(event)
    elif kind == "respond":
        turn_id, turn = args
        if callable(turn):
            turn = turn()
        if turn_id in client.cancelled_early:
            client.cancelled_early.discard(turn_id)
            if client.input.samples:
                client.send({"type": "input_audio_buffer.clear", "event_id": new_id("event")})
            client.input.reset()
            now = time.perf_counter()
            client.signals.report(TurnFinished(turn_id, _cancelled_stats(now)))
            return
        if turn.tool_results:
            client.conversation.answered_calls(turn_id, tool_response_text(turn.tool_results))
            going_on = PendingReply(turn_id, time.perf_counter(), client.speak, turn=turn)
            going_on.text.append(client.conversation.reply_text(turn_id))  # the reply goes on after the calls
            client.replies[turn_id] = going_on
        elif turn_id not in client.replies:
            audio = None if turn.audio is None else turn.audio
            client.conversation.user(turn_id, turn.text, _model_audio(audio), tuple(turn.images))
            if audio is not None:
                client.recording.user(turn_id, audio)
            client.replies[turn_id] = PendingReply(turn_id, time.perf_counter(), client.speak, turn=turn)
            if client.speak:
                client.feeder.start_turn(turn_id)
        for event in client.input.turn(turn, turn_id):
            if event["type"] == "input_audio_buffer.commit":
                client.commits.append(turn_id)
            client.send(event)
    elif kind == "cancel":
        reply = client.replies.get(args[0])
        if reply is None:
            client.cancelled_early.add(args[0])  # not sent yet: it will not be
        elif reply.response_id is not None:
            client.send(
                {"type": "response.cancel", "event_id": new_id("event"), "response_id": reply.response_id}
            )
    elif kind == "truncate":
        _truncate(client, *args)
    elif kind == "configure":
        _configure(client, *args)
    elif kind == "set_tools":
        session = {"type": "realtime", "tools": tools_json(client.tools)}
        client.send({"type": "session.update", "event_id": new_id("event"), "session": session})
    elif kind == "new_conversation":
        client.conversation.clear()
        client.recording.clear()
        client.fresh = True
        client.close_link()
    elif kind == "restore":
        client.conversation.restore(args[0])
        for event in replay_events(args[0]):
            client.send(event)
    elif kind in OUT_OF_BAND:  # a yes or no heard aside, a spoken notice and its cancel
        for event in OUT_OF_BAND[kind](client, *args):
            client.send(event)
    elif kind == "abandon":
        if client.input.samples or client.input.frames:
            client.send({"type": "input_audio_buffer.clear", "event_id": new_id("event")})
        client.input.reset()


def _truncate(client: RealtimeEngine, turn_id: int, heard_samples: int) -> None:
    client.recording.cut(turn_id, heard_samples)
    item_id = client.item_of_turn.get(turn_id)
    if item_id is None:
        client.conversation.cut(turn_id, "")
        client.signals.report(ReplyTruncated(turn_id, ""))  # cut before it began: nothing of it was heard
        return
    client.truncating[item_id] = turn_id
    client.send(
        {
            "type": "conversation.item.truncate",
            "event_id": new_id("event"),
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": audio_end_ms(heard_samples),
        }
    )


def _configure(client: RealtimeEngine, speaker: str, prompt: str) -> None:
    session: dict[str, Any] = {"type": "realtime", "instructions": prompt}
    if client.speak and speaker:
        session["audio"] = {"output": {"voice": speaker}}
    client.send({"type": "session.update", "event_id": new_id("event"), "session": session})
    if prompt != client.prompt:
        client.conversation.clear()
        client.recording.clear()
    client.voice, client.prompt = speaker, prompt


def _read(client: RealtimeEngine, ws: Any, done: threading.Event) -> None:
    try:
        for message in ws:
            try:
                event = json.loads(message)
            except (TypeError, ValueError):
                log.warning("the engine sent something that is not JSON")
                continue
            if isinstance(event, dict):
                client.on_event(event)
    except Exception as error:
        log.debug("engine reader ended: %s", error)
    finally:
        done.set()
        with client.wake:
            client.wake.notify_all()


def _close(client: RealtimeEngine, ws: Any) -> None:
    client.ws = None
    try:
        ws.close()
    except Exception:
        log.debug("closing the engine link", exc_info=True)


def _why(client: RealtimeEngine) -> str:
    local = client.local
    if local is not None and local.process is not None:
        with contextlib.suppress(Exception):
            local.process.wait(0.3)  # the socket can close a moment before the exit is reaped
        code = local.exit_code
        if code is not None:
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            return f"The engine process stopped ({how}); restarting it."
    return "The connection to the engine was lost; reconnecting."


def _lost(client: RealtimeEngine, why: str, *, first: bool = False) -> None:
    """The link is down: replies in flight end (what was heard of them stays), turns the engine never
    took are sent again to the next one, and the window is told."""
    for turn_id, reply in sorted(client.replies.items(), reverse=True):
        if reply.response_id is None and reply.turn is not None and not reply.cancelled:
            with client.wake:
                client.commands.appendleft(("respond", turn_id, reply.turn))
            continue
        text = "".join(reply.text)
        if text:
            client.conversation.reply(turn_id, text, interrupted=True)
        else:
            client.conversation.drop(turn_id)
        if reply.speak:
            client.feeder.finish_turn(turn_id)
        client.signals.report(EngineError(turn_id, why))
    client.drop_replies()
    client.input.reset()
    if not first or client.announced:
        client.signals.report(EngineConnection(True, why))
    elif client.url:
        client.signals.report(EngineStatus(why))


def _forget(client: RealtimeEngine) -> None:
    """The conversation was dropped on purpose: what was in flight ends as cancelled, quietly."""
    now = time.perf_counter()
    for turn_id, reply in sorted(client.replies.items()):
        if reply.speak:
            client.feeder.finish_turn(turn_id)
        client.signals.report(TurnFinished(turn_id, _cancelled_stats(now)))
    for turn_id in client.truncating.values():
        client.signals.report(ReplyTruncated(turn_id, ""))
    client.drop_replies()
    client.truncating.clear()
    client.input.reset()


def _cancelled_stats(now: float) -> Any:
    from events import TurnStats

    return TurnStats(started_s=now, finished_s=now, cancelled=True)


def _model_audio(audio: Any) -> Any:
    import numpy as np

    return None if audio is None else np.asarray(audio).reshape(-1)


def tools_json(tools: tuple[Any, ...]) -> list[dict[str, Any]]:
    """`session.tools`: the function tools the model may call (the app runs them)."""
    from realtime.session_config import tool_json

    return [tool_json(tool) for tool in tools]


def report_call(client: RealtimeEngine, reply: Any, event: dict[str, Any]) -> None:
    """A call of the model (`response.function_call_arguments.done`): the app runs it and sends back
    a `function_call_output`; the reply's response counts it."""
    if reply is None or reply.cancelled:
        return
    reply.calls += 1
    name, arguments = str(event.get("name") or ""), str(event.get("arguments") or "")
    call = ToolCallRequested(reply.turn_id, str(event.get("call_id")), name, arguments, time.perf_counter())
    client.conversation.called(reply.turn_id, call_text(name, arguments), len("".join(reply.text)))
    client.signals.report(call)
