"""Continuing a past conversation: its turns become the `Exchange`s that the engine clients already
replay into a new engine after a crash (`ClientHistory`, `replay_events`, `Engine.remember_exchange`),
so a continued conversation and a restored one take the same path.

The context budget is the engine's (`max_context_tokens`). The plan keeps the newest turns whole and
leaves out, in this order, until its estimate fits: (1) the images of the oldest turns, (2) the
user's audio of the oldest turns (always beyond `REPLAY_AUDIO_S`, as a crash restore does; the turn
goes back as its transcript, or as "(an earlier spoken turn)"), (3) the oldest turns whole. Images
go first because they cost the most and are the least likely to be referred to later (the engine's own
budget drops old frames first too); audio before whole turns because a turn's words still carry
the thread of the conversation. The engine applies its budget again as the turns go in, so an
estimate that is off costs a cache rebuild, not a failure.
"""

from __future__ import annotations

import logging
import wave
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from app.client_history import REPLAY_AUDIO_S, Exchange
from app.journal import Conversation, Turn
from facts import to_float
from model.media_input import MODEL_AUDIO_RATE_HZ
from model.tool_format import ToolResult, call_text, tool_response_text

log = logging.getLogger(__name__)

DEFAULT_CONTEXT_TOKENS = 32_768  # model.engine.EngineSettings.max_context_tokens (no torch here)
BUDGET_SHARE = 0.5  # of the context, for the restored turns: the rest is for the talk that goes on
AUDIO_TOKENS_PER_S = 13  # Qwen3-Omni's audio encoder: about 12.5 tokens a second
PIXELS_PER_IMAGE_TOKEN = 32 * 32  # 16 px patches merged 2 x 2
CHARS_PER_TOKEN = 3  # a cautious guess for text in any language
TURN_TOKENS = 12  # the chat template's tokens around a user turn and its reply
EARLIER_SPOKEN = "(an earlier spoken turn)"


@dataclass(frozen=True)
class RestorePlan:
    """The exchanges to put back, oldest first, and what was left out (in words, for the window)."""

    exchanges: list[Exchange]
    dropped: list[str]
    estimated_tokens: int


def restore_plan(
    conversation: Conversation,
    *,
    context_tokens: int = DEFAULT_CONTEXT_TOKENS,
    replay_audio_s: float = REPLAY_AUDIO_S,
) -> RestorePlan:
    """The conversation's answered turns as exchanges that fit `BUDGET_SHARE` of `context_tokens`."""
    turns = [t for t in conversation.turns if t.reply is not None]
    exchanges = [_exchange(t) for t in turns]
    costs = [_cost(e) for e in exchanges]
    budget = int(context_tokens * BUDGET_SHARE)
    dropped = {"images": 0, "audio": 0, "turns": 0}

    heard_s = 0.0
    for i in reversed(range(len(exchanges))):  # the newest audio within replay_audio_s stays
        heard_s += exchanges[i].audio_s
        if exchanges[i].audio is not None and heard_s > replay_audio_s:
            exchanges[i], costs[i] = _without_audio(exchanges[i], turns[i])
            dropped["audio"] += 1

    for what in ("images", "audio"):
        for i in range(len(exchanges) - 1):  # the newest turn keeps everything
            if sum(costs) <= budget:
                break
            if what == "images" and exchanges[i].images:
                exchanges[i] = replace(exchanges[i], images=())
            elif what == "audio" and exchanges[i].audio is not None:
                exchanges[i], _ = _without_audio(exchanges[i], turns[i])
            else:
                continue
            costs[i] = _cost(exchanges[i])
            dropped[what] += 1
    while len(exchanges) > 1 and sum(costs) > budget:
        exchanges.pop(0)
        costs.pop(0)
        dropped["turns"] += 1
    return RestorePlan(exchanges, _words(dropped), sum(costs))


def _exchange(turn: Turn) -> Exchange:
    audio = _read_wav(turn.user_audio) if turn.user_audio is not None else None
    images = tuple(i for i in (_read_image(p) for p in turn.images) if i is not None)
    if audio is not None:
        text = turn.typed  # the model hears the words: a transcript would say them twice
    else:
        text = turn.typed or turn.transcript or (EARLIER_SPOKEN if turn.audio_s else "")
    if not text and audio is None and not images:
        text = EARLIER_SPOKEN if turn.audio_s else "(an image that was not kept)"
    exchange = Exchange(
        turn.turn_id, text, audio, images, turn.reply or "", turn.interrupted, turn.transcript
    )
    return _with_calls(exchange, turn.calls)


def _with_calls(exchange: Exchange, calls: list[dict[str, Any]]) -> Exchange:
    """The turn's tool calls and their results, as the model read them (`Exchange.as_read`)."""
    if not calls:
        return exchange
    written = "\n".join(call_text(str(c.get("name", "")), str(c.get("arguments", ""))) for c in calls)
    results = tuple(
        ToolResult(
            str(c.get("call_id", "")), str(c.get("name", "")), str(c.get("result") or c.get("message") or "")
        )
        for c in calls
    )
    said = min(int(c.get("said", 0) or 0) for c in calls)
    return replace(exchange, calls=written, results=tool_response_text(results), said_before=said)


def _without_audio(exchange: Exchange, turn: Turn) -> tuple[Exchange, int]:
    text = exchange.text or turn.transcript or EARLIER_SPOKEN  # the model reads what it heard
    changed = replace(exchange, audio=None, text=text)
    return changed, _cost(changed)


def _cost(exchange: Exchange) -> int:
    """The exchange's tokens in the engine's context, estimated without a tokenizer."""
    text = len(exchange.text) + len(exchange.reply or "") + len(exchange.calls) + len(exchange.results)
    tokens = TURN_TOKENS * (2 if exchange.results else 1) + text // CHARS_PER_TOKEN
    tokens += int(exchange.audio_s * AUDIO_TOKENS_PER_S)
    for image in exchange.images:
        height, width = np.asarray(image).shape[:2]
        tokens += max(1, height * width // PIXELS_PER_IMAGE_TOKEN)
    return tokens


def _words(dropped: dict[str, int]) -> list[str]:
    said = {
        "images": "the images of {n} older turns",
        "audio": "the recorded speech of {n} older turns (their words went back as text)",
        "turns": "the {n} oldest turns",
    }
    return [said[k].format(n=n) for k, n in dropped.items() if n]


def _read_wav(path: Path) -> np.ndarray | None:
    """16 kHz mono int16, as the engine took it; None (and a log line) for a file that does not read."""
    try:
        with wave.open(str(path), "rb") as source:
            if source.getsampwidth() != 2 or source.getnchannels() != 1:
                raise wave.Error("not 16-bit mono")
            pcm = np.frombuffer(source.readframes(source.getnframes()), "<i2").astype(np.int16)
            rate = source.getframerate()
    except (OSError, wave.Error, EOFError) as error:
        log.warning("the recorded turn %s does not read: %s", path.name, error)
        return None
    if rate != MODEL_AUDIO_RATE_HZ and pcm.size:
        length = round(pcm.size * MODEL_AUDIO_RATE_HZ / rate)
        where = np.arange(length) * rate / MODEL_AUDIO_RATE_HZ
        pcm = np.interp(where, np.arange(pcm.size), pcm).astype(np.int16)
    return pcm


def _read_image(path: Path) -> Any:
    try:
        from PIL import Image

        with Image.open(path) as picture:
            return np.asarray(picture.convert("RGB"))
    except Exception as error:
        log.warning("the kept image %s does not read: %s", path.name, error)
        return None


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """A kept WAV as float32 mono in [-1, 1] and its rate, for playback."""
    with wave.open(str(path), "rb") as source:
        rate = source.getframerate()
        pcm = np.frombuffer(source.readframes(source.getnframes()), "<i2")
    return to_float(pcm), rate
