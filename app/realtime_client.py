"""The app as a client of `omnidesk serve`: its own child process by default, or a remote server.

Three threads: the link thread connects (starting or restarting the child), restores the
conversation into a new engine, and sends the session's commands in order; a reader thread per
connection turns server events into `EngineSignals` and hands reply audio to the `ReplyFeeder`;
the feeder writes it to the speaker. `cancel` goes out at once from the caller's thread, ahead of
queued commands. When the engine dies or the link drops, in-flight replies fail, the window is
told, and the link comes back with back-off and replays the conversation (`ClientHistory`).
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from app.client_history import ClientHistory
from app.engine_client import EngineSignals, LoadRequest, ModelInfo, SpeechOutput
from app.engine_process import LocalEngine
from app.realtime_input import InputStream
from app.realtime_notice import Notice, notice_refused, notice_turn, on_notice_event
from app.realtime_reply import REPLY_EVENTS, PendingReply
from app.recording import Recording
from app.reply_feeder import ReplyFeeder
from events import (
    EngineConfigured,
    EngineError,
    EngineStatus,
    LoadCancelled,
    LoadFailed,
    Message,
    ReplyTruncated,
    UserTranscript,
)
from realtime.wire import (
    MAX_EVENT_BYTES,
)

log = logging.getLogger(__name__)


class RealtimeEngine:
    """`EngineClient` over the Realtime protocol. `url=None` runs the engine as a child process."""

    def __init__(
        self,
        speech: SpeechOutput | None,
        *,
        url: str | None = None,
        api_key: str | None = None,
        frame_format: str = "jpeg",
        trace: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.signals = EngineSignals()
        self.recording = Recording()
        self.conversation = ClientHistory()
        self.url = url
        self.api_key = api_key
        self.trace = trace  # (direction "sent" | "received", event): tests check every event
        self.feeder = ReplyFeeder(self.signals.report)
        self.feeder.speech = speech
        self.local: LocalEngine | None = None
        self.request: LoadRequest | None = None
        self.model_info: ModelInfo | None = None
        self.input = InputStream(frame_format=frame_format)
        self.commands: collections.deque[tuple[Any, ...]] = collections.deque()
        self.wake = threading.Condition()
        self._send_lock = threading.Lock()
        self.ws: Any = None
        self.connected = threading.Event()
        self.replies: dict[int, PendingReply] = {}
        self.failure: EngineError | None = None  # the engine's error for the reply in flight
        self.stopping = False
        self.generation = 0  # bumped by load(): a new engine, a new link
        self._link: threading.Thread | None = None
        self.item_of_turn: dict[int, str] = {}  # each reply's assistant item, for truncation
        self.truncating: dict[str, int] = {}
        self.commits: collections.deque[int] = collections.deque(maxlen=64)  # turns whose audio went out
        self.user_item_turn: dict[str, int] = {}  # the user's audio items, for their transcription
        self.cancelled_early: set[int] = set()
        self.voice = ""
        self.prompt = ""
        self.fresh = False  # the next link starts a new conversation instead of restoring this one
        self.announced = False  # `loaded` was emitted for the current load
        self.load_error: str | None = None
        self.speak = True  # replies of this session are spoken
        self.tools: tuple[Any, ...] = ()  # ToolSpecs, sent in session.update on every link
        self.notices: dict[int, Notice] = {}  # spoken notices asked for (app/realtime_notice.py)
        self.notices_refused = False  # the server cannot say them: the window shows a running tool

    # -- EngineClient ----------------------------------------------------------------------------

    def load(self, request: LoadRequest) -> None:
        """Start (or restart) the engine for `request`: a new model means a new conversation."""
        self.request = request
        self.model_info = None
        self.announced = False
        self.load_error = None
        self.conversation.clear()
        with self.wake:
            self.generation += 1
            self.commands.clear()
            self.wake.notify_all()
        self.close_link()
        if self._link is None:
            self._link = threading.Thread(target=self._run, name="engine-link", daemon=True)
            self._link.start()

    def cancel_load(self) -> None:
        if self.announced:
            return
        self.request = None
        with self.wake:
            self.generation += 1
            self.wake.notify_all()
        self.close_link()
        local = self.local
        if local is not None:
            threading.Thread(target=local.stop, name="engine-stop", daemon=True).start()
        self.signals.report(LoadCancelled())

    def respond(self, turn_id: int, turn: Any) -> None:
        self.queue_command("respond", turn_id, turn)

    def listen(self, audio: Any, frames: Any = None, fps: float = 0.0) -> None:
        self.queue_command("listen", audio, frames, fps)

    def abandon(self) -> None:
        self.queue_command("abandon")

    def answer_aside(self, key: int, turn: Any) -> None:
        self.queue_command("aside", key, turn)

    def say_notice(self, key: int, request: str) -> None:
        """Say `request`'s answer out of the conversation (that a tool still runs)."""
        self.queue_command("notice", key, request)

    def cancel_notice(self, key: int) -> None:
        self.feeder.drop(-key)
        self.queue_command("unnotice", key)

    def speculate(self) -> None:
        """The user paused with everything said so far sent: the engine may compute the reply now."""
        self.queue_command("speculate")

    def truncate(self, turn_id: int, heard_samples: int) -> None:
        self.queue_command("truncate", turn_id, heard_samples)

    def configure(self, speaker: str, system_prompt: str) -> None:
        self.queue_command("configure", speaker, system_prompt)

    def set_tools(self, tools: tuple[Any, ...]) -> None:
        self.tools = tuple(tools)
        self.queue_command("set_tools")

    def new_conversation(self) -> None:
        self.queue_command("new_conversation")

    def restore(self, exchanges: list[Any]) -> None:
        """A past conversation continued: sent as the items a crash restore sends (issue 16)."""
        self.queue_command("restore", list(exchanges))

    def cancel(self, turn_id: int) -> None:
        """Stop reply `turn_id`: its audio is dropped here at once, and `response.cancel` goes out
        ahead of every queued command (the truncation that follows must find the reply stopped)."""
        self.feeder.drop(turn_id)
        reply = self.replies.get(turn_id)
        if reply is not None:
            reply.cancelled = True
        with self.wake:
            self.commands.appendleft(("cancel", turn_id))
            self.wake.notify_all()

    def cancel_all(self) -> None:
        for turn_id in list(self.replies):
            self.cancel(turn_id)

    def drop_replies(self) -> None:
        """Forget what is in flight (the link went down, or the conversation was dropped): replies,
        and notices, whose audio ends where it is."""
        self.replies.clear()
        for key in list(self.notices):
            self.feeder.finish_turn(notice_turn(key))
        self.notices.clear()

    def history(self) -> list[Message]:
        return self.conversation.messages()

    def set_speech(self, speech: SpeechOutput | None) -> None:
        self.feeder.speech = speech

    def stop(self, timeout_s: float = 5.0) -> bool:
        self.stopping = True
        with self.wake:
            self.generation += 1
            self.wake.notify_all()
        self.close_link()
        if self.local is not None:
            self.local.stop(timeout_s=min(timeout_s, 3.0))
        self.feeder.stop()
        if self._link is not None:
            self._link.join(timeout_s)
        return True

    # -- the link thread -------------------------------------------------------------------------

    def queue_command(self, *command: Any) -> None:
        with self.wake:
            self.commands.append(command)
            self.wake.notify_all()

    def _run(self) -> None:
        from app.realtime_link import run_link

        run_link(self)

    def send(self, event: dict[str, Any]) -> None:
        """Send one client event (any thread); ConnectionError when there is no link."""
        ws = self.ws
        if ws is None:
            raise ConnectionError("not connected to the engine")
        if self.trace is not None:
            self.trace("sent", event)
        with self._send_lock:
            ws.send(json.dumps(event))

    def close_link(self) -> None:
        """Close the connection without waiting for the server's answer (never blocks the caller)."""
        ws = self.ws
        if ws is not None:
            threading.Thread(target=_close_quietly, args=(ws,), name="engine-close", daemon=True).start()

    def connect(self, url: str, api_key: str | None) -> Any:
        from websockets.sync.client import connect

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        return connect(
            url,
            additional_headers=headers,
            max_size=MAX_EVENT_BYTES,
            open_timeout=10,
            compression=None,
            proxy=None,
        )

    # -- server events (reader thread) -----------------------------------------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        if self.trace is not None:
            self.trace("received", event)
        kind = event.get("type", "")
        if kind.startswith("response.") and on_notice_event(self, event):
            return
        handler = REPLY_EVENTS.get(kind)
        if handler is not None:
            handler(self, event)
        elif (own := getattr(self, "_on_" + kind.replace(".", "_"), None)) is not None:
            own(event)

    def _on_omnidesk_model_status(self, event: dict[str, Any]) -> None:
        if event.get("state") == "loading":
            self.signals.report(EngineStatus(str(event.get("message", ""))))
        elif event.get("state") == "ready" and isinstance(event.get("model"), dict):
            self.model_info = ModelInfo.of(event["model"])

    def _on_error(self, event: dict[str, Any]) -> None:
        error = event.get("error") or {}
        if notice_refused(self, event):
            return
        message = str(error.get("message", "engine error"))
        if error.get("code") == "model_load_failed":
            self.model_info = None
            self.load_error = message
            self.signals.report(LoadFailed(message))
            return
        if self.replies:  # the failed reply's `response.done` follows: it reports this message
            self.failure = EngineError(-1, message, str(error.get("code") or "engine_error"))
        log.warning("engine: %s (%s)", message, error.get("code"))

    def _on_session_created(self, event: dict[str, Any]) -> None:
        self.connected.set()

    def _on_session_updated(self, event: dict[str, Any]) -> None:
        session = event.get("session") or {}
        voice = ((session.get("audio") or {}).get("output") or {}).get("voice") or ""
        self.signals.report(EngineConfigured(str(voice), str(session.get("instructions", ""))))

    def _on_input_audio_buffer_committed(self, event: dict[str, Any]) -> None:
        item_id = event.get("item_id")
        if self.commits and isinstance(item_id, str):
            turn_id = self.commits.popleft()
            self.user_item_turn[item_id] = turn_id
            self.user_item_turn = {i: t for i, t in self.user_item_turn.items() if t > turn_id - 64}

    def _on_conversation_item_input_audio_transcription_completed(self, event: dict[str, Any]) -> None:
        turn_id = self.user_item_turn.get(str(event.get("item_id")))
        if turn_id is None:
            return
        text = str(event.get("transcript", "")).strip()
        self.conversation.transcribed(turn_id, text)
        self.signals.report(UserTranscript(turn_id, text))

    def _on_conversation_item_truncated(self, event: dict[str, Any]) -> None:
        turn_id = self.truncating.pop(str(event.get("item_id")), None)
        if turn_id is None:
            return
        kept = str(event.get("transcript", self.conversation.reply_text(turn_id)))
        self.conversation.cut(turn_id, kept)
        self.signals.report(ReplyTruncated(turn_id, kept))


def _close_quietly(ws: Any) -> None:
    try:
        ws.close()
    except Exception:
        log.debug("closing the engine link", exc_info=True)
