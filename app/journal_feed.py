"""What the journal keeps of a conversation, taken from the session's events (not from the window).

The session reports a reply as it streams (`TextDelta`) and when it ends (`TurnFinished`, or
`ReplyTruncated` when the user cut it); the feed gathers the text and the turn's latency and writes
one record per finished turn to the `HistoryLog`.
"""

from __future__ import annotations

from typing import Any

from app.history_log import HistoryLog
from events import (
    ConversationReset,
    EngineConnection,
    ModelLoaded,
    Problem,
    ReplyTruncated,
    TextDelta,
    ToolCallFinished,
    TurnFinished,
    TurnLatency,
    UserTranscript,
    UserTurnSent,
)

KEPT_TURNS = 8  # replies whose text and latency are held until they finish


class JournalFeed:
    def __init__(self, log: HistoryLog) -> None:
        self.log = log
        self._text: dict[int, list[str]] = {}
        self._latency: dict[int, TurnLatency] = {}

    def on_event(self, event: object) -> None:
        match event:
            case UserTurnSent(turn_id, text, audio_s, ended_early):
                self._text[turn_id] = []
                self._forget_before(turn_id - KEPT_TURNS)
                early = {"ended_early": True} if ended_early else {}
                self.log.write("user", turn_id=turn_id, text=text, audio_s=round(audio_s, 3), **early)
            case UserTranscript(turn_id, text):
                self.log.write("transcript", turn_id=turn_id, text=text)
            case TextDelta(turn_id, text):
                self._text.setdefault(turn_id, []).append(text)
            case ToolCallFinished(turn_id, call_id, name, arguments, result, ok, message, took_s):
                said = len("".join(self._text.get(turn_id, [])))  # where in the reply it came (for a restore)
                self.log.write("tool_call", turn_id=turn_id, call_id=call_id, name=name, arguments=arguments,
                               result=result, ok=ok, message=message, took_s=round(took_s, 3),
                               said=said)  # fmt: skip
            case TurnLatency(turn_id):
                self._latency[turn_id] = event
            case TurnFinished(turn_id, stats):
                text = "".join(self._text.pop(turn_id, []))
                latency = self._latency_fields(turn_id)
                self.log.write("assistant", turn_id=turn_id, text=text, interrupted=False,
                               context_tokens=stats.prompt_tokens, **latency)  # fmt: skip
            case ReplyTruncated(turn_id, heard_text):
                self._text.pop(turn_id, None)
                self.log.write("assistant", turn_id=turn_id, text=heard_text, interrupted=True,
                               **self._latency_fields(turn_id))  # fmt: skip
            case ConversationReset(persona):
                self.log.write("new_conversation", persona=persona.id if persona else "")
            case ModelLoaded(info):
                self.log.write("model_ready", source=info.source, device=info.device, is_demo=info.is_demo)
            case EngineConnection(lost, message):
                self.log.write("engine", state="lost" if lost else "restored", message=message)
            case Problem(message):
                self.log.write("error", message=message)

    def _latency_fields(self, turn_id: int) -> dict[str, Any]:
        latency = self._latency.pop(turn_id, None)
        if latency is None:
            return {}
        return {"first_text_ms": latency.first_text_ms, "first_audio_ms": latency.first_audio_ms,
                "tokens_per_s": latency.tokens_per_s}  # fmt: skip

    def _forget_before(self, turn_id: int) -> None:
        for kept in (self._text, self._latency):
            for old in [t for t in kept if t < turn_id]:
                del kept[old]
