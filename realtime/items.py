"""Conversation items of the Realtime protocol ↔ our `UserTurn`s and replies.

A user message's content parts (`input_text`, `input_image`, `input_audio`) become one `UserTurn`;
an assistant message (`output_text`, or `output_audio` with its transcript) is a reply the client
restores into a new engine."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from model.media_input import MODEL_AUDIO_RATE_HZ, UserTurn
from model.tool_format import ToolResult
from realtime.wire import (
    MAX_TURN_AUDIO_S,
    WIRE_RATE_HZ,
    WireError,
    decode_image,
    decode_pcm16,
    from_wire,
    new_id,
)


@dataclass(frozen=True)
class UserItem:
    item_id: str
    turn: UserTurn


def user_turn(content: Any) -> UserTurn:
    """One `UserTurn` from a user message's content parts."""
    if not isinstance(content, list) or not content:
        raise WireError("a user message needs a non-empty content list", param="item.content")
    texts: list[str] = []
    images: list[np.ndarray] = []
    audio: np.ndarray | None = None
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "input_text":
            text = part.get("text")
            if not isinstance(text, str):
                raise WireError("input_text needs a text string", param=f"item.content[{i}].text")
            texts.append(text)
        elif kind == "input_image":
            images.append(decode_image(part.get("image_url"), f"item.content[{i}].image_url"))
        elif kind == "input_audio":
            if audio is not None:
                raise WireError("one input_audio part per message", param=f"item.content[{i}]")
            wire = decode_pcm16(part.get("audio"), f"item.content[{i}].audio")
            if wire.size / WIRE_RATE_HZ > MAX_TURN_AUDIO_S:
                raise WireError(f"input_audio is over {MAX_TURN_AUDIO_S:.0f} s", param=f"item.content[{i}]")
            audio = from_wire().push(wire, last=True)
        else:
            raise WireError(
                f"content part type {kind!r} is not supported here", param=f"item.content[{i}].type"
            )
    return UserTurn(
        text="\n".join(texts), audio=audio, audio_rate_hz=MODEL_AUDIO_RATE_HZ, images=tuple(images)
    )


def merge_turns(turns: list[UserTurn]) -> UserTurn:
    """Several user items waiting for one response, as one turn (the engine takes one per reply)."""
    if len(turns) == 1:
        return turns[0]
    with_audio = [t for t in turns if t.audio is not None]
    if len(with_audio) > 1:
        raise WireError("only one spoken part per response: create a response after each one")
    base = with_audio[0] if with_audio else UserTurn()
    text = "\n".join(t.text for t in turns if t.text.strip())
    images = tuple(image for t in turns for image in t.images)
    results = tuple(result for t in turns for result in t.tool_results)
    return replace(base, text=text, images=images, tool_results=results)


def tool_output_turn(item: dict[str, Any], names: dict[str, str]) -> UserTurn:
    """A `function_call_output` item: the result of one of the model's calls (by `call_id`)."""
    call_id, output = item.get("call_id"), item.get("output")
    if not isinstance(call_id, str) or not call_id:
        raise WireError("a function_call_output needs the call_id it answers", param="item.call_id")
    if not isinstance(output, str):
        raise WireError("a function_call_output needs an output string", param="item.output")
    return UserTurn(tool_results=(ToolResult(call_id, names.get(call_id, ""), output),))


def function_call_json(
    item_id: str, call_id: str, name: str, arguments: str, *, status: str
) -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def reply_text(content: Any) -> str:
    """The text of an assistant message (`output_text` parts, or `output_audio` transcripts)."""
    if not isinstance(content, list):
        raise WireError("an assistant message needs a content list", param="item.content")
    parts: list[str] = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("output_text", "text"):
            value = part.get("text")
        elif kind == "output_audio":
            value = part.get("transcript")
        else:
            raise WireError(
                f"assistant content part {kind!r} is not supported", param=f"item.content[{i}].type"
            )
        if not isinstance(value, str):
            raise WireError("the assistant part needs its text", param=f"item.content[{i}]")
        parts.append(value)
    return "".join(parts)


def user_item_json(item_id: str, turn: UserTurn, *, status: str = "completed") -> dict[str, Any]:
    """The item as the server reports it back: what it holds, without echoing media bytes."""
    content: list[dict[str, Any]] = []
    if turn.audio is not None:
        content.append({"type": "input_audio", "transcript": None})
    if turn.text:
        content.append({"type": "input_text", "text": turn.text})
    content += [{"type": "input_image"} for _ in turn.images]
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "user",
        "status": status,
        "content": content,
    }


def assistant_item_json(item_id: str, text: str, *, audio: bool, status: str) -> dict[str, Any]:
    part = {"type": "output_audio", "transcript": text} if audio else {"type": "output_text", "text": text}
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [part],
    }


def item_events(item: dict[str, Any], previous_item_id: str | None) -> list[dict[str, Any]]:
    """`conversation.item.added` then `.done` for an item that is complete when it is added."""
    return [
        {"type": kind, "event_id": new_id("event"), "previous_item_id": previous_item_id, "item": item}
        for kind in ("conversation.item.added", "conversation.item.done")
    ]
