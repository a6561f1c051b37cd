"""A reply computed before the user is known to be done, and taken back if they go on (issue 12).

At a pause the caller takes a `checkpoint`, runs `Engine.respond` on the turn so far and holds its
events. When the turn ends right there, the held reply is the reply: nothing is computed twice.
When the user goes on, `rewind` puts the conversation back as the checkpoint found it: the Thinker's
cache cropped, the history and the last reply as they were, the Talker re-synced by its next reply
(as after a failed turn), and the turn being spoken listened to again so its live prefill goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from model.conversation_state import ConversationState


@dataclass(frozen=True)
class Checkpoint:
    saved: ConversationState
    audio: np.ndarray  # the turn being spoken, as the engine heard it so far (16 kHz float32)
    frames: list[np.ndarray]
    fps: float | None


def checkpoint(engine: Any) -> Checkpoint:
    """The conversation now, with the turn being spoken (taken before the speculative reply)."""
    live = engine.conversation.live
    if live is None:
        return Checkpoint(engine.conversation.snapshot(), np.zeros(0, np.float32), [], None)
    return Checkpoint(engine.conversation.snapshot(), live.audio_array(), list(live.frames), live.fps)


def rewind(engine: Any, point: Checkpoint) -> None:
    """Take back everything since `point`: the speculative reply leaves no trace."""
    state = engine.conversation
    state.live = None
    if not state.restore(point.saved):
        engine.rebuild_cache()
    _forget_talker_turns(state)
    if point.audio.size or point.frames:
        engine.listen(point.audio, point.frames, point.fps)


def _forget_talker_turns(state: ConversationState) -> None:
    """The Talker keeps the user turns it heard that are still in the context (the speculative
    turn goes); its next reply crops its cache to them instead of hearing every turn again."""
    memory = state.talker
    heard = [s for s in state.context.segments if s.talker_embeds is not None]
    keep = 0
    while keep < min(len(heard), len(memory.users)) and heard[keep] is memory.users[keep]:
        keep += 1
    memory.users = memory.users[:keep]
    memory.live = 0
