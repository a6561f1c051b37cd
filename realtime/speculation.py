"""A response computed at the user's pause, before the client commits the turn (our extension
`omnidesk.input_audio_buffer.speculate`, issue 12).

The client sends it at a pause with every sample of the turn so far. The server runs the response
on the buffer as it is, holding its events. If the client then commits that same buffer and asks
for a response, the held events go out at once and the rest streams on: the reply was ready before
the turn ended. Anything else first (more audio, a clear, another item, a session update) drops it:
the engine's conversation is rewound to before it, as if it had never run. A client that never
sends the event (the OpenAI SDK, vLLM-Omni's) sees the protocol unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from realtime.reply import Response

Send = Callable[[dict[str, Any]], None]


@dataclass(eq=False)
class Gate:
    """The response's server events: held while it is speculative, then sent or dropped."""

    send_out: Send
    held: list[dict[str, Any]] = field(default_factory=list)
    state: str = "held"  # "held", "open" or "dropped"
    finished: bool = False  # the response's last event has been given
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, event: dict[str, Any]) -> None:
        with self.lock:
            if self.state == "open":
                self.send_out(event)
            elif self.state == "held":
                self.held.append(event)

    def finish(self) -> None:
        with self.lock:
            self.finished = True

    def open(self, metadata: dict[str, Any] | None) -> bool:
        """Send what was held (carrying the metadata of the `response.create` that asked for it) and
        pass the rest through. Returns whether the response had already finished."""
        with self.lock:
            for event in self.held:
                if isinstance(event.get("response"), dict):
                    event["response"]["metadata"] = metadata
                self.send_out(event)
            self.held, self.state = [], "open"
            return self.finished

    def drop(self) -> None:
        with self.lock:
            self.held, self.state = [], "dropped"


@dataclass(eq=False)
class Speculation:
    """One speculative response and what it was computed from."""

    response: Response
    gate: Gate
    samples: int  # the input buffer's length when it began: a commit of exactly this keeps it
    frames: int
    user_item_id: str  # the id the committed user item gets (its transcript is reported under it)
    point: Any = None  # model.speculation.Checkpoint, taken on the job thread before the reply
    committed: bool = False

    def matches(self, samples: int, frames: int) -> bool:
        return samples == self.samples and frames == self.frames
