"""One conversation's state inside the engine, as one object: what the Thinker's cache holds, what
the Talker's cache holds, the history, and the turn being spoken. A failed turn goes back to a
snapshot taken before it."""

from __future__ import annotations

from dataclasses import dataclass, field

from events import Message
from model.context import ThinkerContext
from model.live_turn import LiveTurn
from model.talker_prompt import TalkerMemory


@dataclass(frozen=True)
class LastReply:
    """The last reply's token ids (as generated, its end token included; or as kept when cut) and
    the context length where it begins."""

    turn_id: int
    start: int
    ids: list[int]


@dataclass
class ConversationState:
    """Everything one conversation has put into the model."""

    context: ThinkerContext = field(default_factory=ThinkerContext)
    history: list[Message] = field(default_factory=list)
    unfed: list[int] = field(default_factory=list)  # reply tokens chosen but not in the cache yet
    last_reply: LastReply | None = None
    rope_delta: int = 0  # TM-RoPE position minus cache index after the context
    talker: TalkerMemory = field(default_factory=TalkerMemory)
    live: LiveTurn | None = None  # the turn being spoken, prefilled window by window

    def snapshot(self) -> ConversationState:
        """A copy to go back to: the same Thinker cache with the segments it holds now, copies of
        the lists; no Talker memory and no live turn (the Talker's cache re-syncs on its own)."""
        return ConversationState(
            context=ThinkerContext(segments=list(self.context.segments), cache=self.context.cache),
            history=list(self.history),
            unfed=list(self.unfed),
            last_reply=self.last_reply,
            rope_delta=self.rope_delta,
        )

    def restore(self, saved: ConversationState) -> bool:
        """Go back to `saved`, cropping the Thinker cache to it. Returns False when the cache is
        no longer the one `saved` holds (the context budget rebuilt it meanwhile): the caller must
        then prefill the restored segments again."""
        same_cache = saved.context.cache is None or self.context.cache is saved.context.cache
        if same_cache:
            self.context.crop(saved.context.length)
            self.context.segments = list(saved.context.segments)
        else:
            self.context = ThinkerContext(segments=list(saved.context.segments))
        self.history, self.unfed = list(saved.history), list(saved.unfed)
        self.last_reply, self.rope_delta = saved.last_reply, saved.rope_delta
        self.talker.live = 0
        return same_cache
