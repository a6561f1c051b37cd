"""An out-of-band response with audio (`response.create` with `conversation: "none"` and
`output_modalities: ["audio"]`): the model says what the response's `instructions` ask, in the
session's voice, heard alone after the session's instructions (its `input` must be empty: a
context of its own). It streams as any response does (`response.output_audio.delta` and its
transcript, carrying its own response id) and adds nothing to the conversation: no
`conversation.item.*` event, and the engine's context, Talker memory and history stay as they were
(model/spoken_aside.py). `response.cancel` with its id stops it. The app has the assistant say this
way that a tool is still running."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from events import EngineError, Event
from realtime.reply import Response, run_response
from realtime.wire import WireError, new_id

log = logging.getLogger(__name__)


def say_aside(conversation: Any, options: dict[str, Any]) -> None:
    """Start the spoken out-of-band response `options` asks for, on the conversation's job thread."""
    request = options.get("instructions")
    if not isinstance(request, str) or not request.strip():
        raise WireError(
            "a spoken out-of-band response says what its instructions ask", param="response.instructions"
        )
    if options.get("input") not in (None, []):
        raise WireError(
            "a spoken out-of-band response is heard on a context of its own: input must be []",
            param="response.input",
        )
    conversation.config.response_speaks(["audio"], conversation.host)  # a model without a Talker refuses
    metadata = options.get("metadata") if isinstance(options.get("metadata"), dict) else None
    response = Response(
        id=new_id("resp"), item_id=new_id("item"), number=0, turn=None, audio=True, metadata=metadata
    )
    conversation.asides[response.id] = response
    created = {**response.json("in_progress"), "conversation_id": None}
    conversation.send({"type": "response.created", "event_id": new_id("event"), "response": created})

    def run() -> None:
        try:
            run_response(_Saying(conversation.engine, request), response, conversation.send)
        except ConnectionError as error:
            log.info("out-of-band response %s stopped: %s", response.id, error)
        finally:
            conversation.asides.pop(response.id, None)

    conversation._locked(run)


def cancel(conversation: Any, response_id: Any) -> bool:
    """Stop the spoken out-of-band response `response_id`, if it is one still running."""
    response = conversation.asides.get(response_id) if isinstance(response_id, str) else None
    if response is None:
        return False
    response.cancel.set()
    return True


@dataclass
class _Saying:
    """The engine as `run_response` drives it, saying `request` instead of replying to a turn."""

    engine: Any
    request: str

    @property
    def settings(self) -> Any:
        return _Speaks()

    def respond(self, _turn: Any, number: int, cancel: Any) -> Iterator[Event]:
        try:
            yield from self.engine.say_aside(self.request, number, cancel)
        except Exception as error:
            log.info("a spoken out-of-band response failed: %s", error)
            yield EngineError(number, f"the out-of-band response failed: {error}")


@dataclass(frozen=True)
class _Speaks:
    speak: bool = True
