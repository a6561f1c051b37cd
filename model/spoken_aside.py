"""A spoken answer that leaves no trace: the Realtime protocol's out-of-band response with audio
(`response.create` with `conversation: "none"` and audio out). The app has the assistant say, in
the persona's voice, that a tool is still running. Thinker, Talker and Code2Wav run on a
conversation state of their own (the persona's system turn, then the request as a user turn), so
the conversation's Thinker cache, the Talker's memory of it and the history are never touched;
its own random generator leaves the conversation's draws as they were."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from events import AudioChunk, Event, TextDelta, TurnFinished, TurnStats
from model import thinker_prefill
from model.conversation_state import ConversationState
from model.media_input import InputError, UserTurn
from model.prompt import PromptFormat
from model.reply_turn import ReplyTurn
from model.thinker_decode import ThinkerDecoder

if TYPE_CHECKING:
    from model.engine import Engine

SPOKEN_ASIDE_MAX_TOKENS = 32  # a few words
SPOKEN_ASIDE_MAX_FRAMES = 75  # 6 s of speech at 80 ms a frame, whatever the Talker does


def say_aside(engine: Engine, request: str, turn_id: int, cancel: threading.Event) -> Iterator[Event]:
    """Stream the model's spoken answer to `request` (text as `TextDelta`, speech as `AudioChunk`,
    then `TurnFinished`), heard alone after the persona's system turn; a call it writes is dropped."""
    if not request.strip():
        raise InputError("the out-of-band request is empty")
    if not engine.can_speak:
        raise InputError("this model does not speak (no Talker)")
    conversation = engine.conversation
    before = conversation.snapshot()
    stats: dict[str, Any] = {"started_s": time.perf_counter()}
    with torch.inference_mode():
        reply, state = _start(engine, request, turn_id, stats)
        try:
            while not reply.done and not cancel.is_set():
                if not reply.text_done:
                    yield from (e for e in reply.thinker_step() if isinstance(e, TextDelta))
                if not reply.talker_done and reply.talker_ready:
                    yield from (e for e in reply.talker_step(state.talker, state.context.segments))
            reply.cancelled = not reply.done
            reply.decoder.finish()
        finally:
            if _changed(conversation, before) and not conversation.restore(before):
                thinker_prefill.rebuild(engine.parts, conversation)
    stats.update(reply.finish_stats())
    yield TurnFinished(turn_id, TurnStats(**stats))


def _start(
    engine: Engine, request: str, turn_id: int, stats: dict[str, Any]
) -> tuple[ReplyTurn, ConversationState]:
    """Prefill the persona's system turn and the request on a state of their own; the reply set up on it."""
    prompt = PromptFormat(engine.parts, engine.settings.system_prompt, engine.settings.video_max_pixels)
    state = ConversationState()
    segments = prompt.turn_segments(UserTurn(text=request), prompt.lead_segments([], []))
    logits, assistant_embeds = thinker_prefill.prefill(engine.parts, state, segments, need_talker=True)
    stats["prefill_done_s"] = time.perf_counter()
    stats["prompt_tokens"] = stats["new_prompt_tokens"] = state.context.length
    settings = replace(
        engine.settings,
        speak=True,
        tools=(),
        max_text_tokens=min(engine.settings.max_text_tokens, SPOKEN_ASIDE_MAX_TOKENS),
        max_codec_frames=min(engine.settings.max_codec_frames, SPOKEN_ASIDE_MAX_FRAMES),
    )
    generator = torch.Generator(device=engine.device)
    generator.manual_seed(engine.settings.seed if engine.settings.seed is not None else time.time_ns())
    reply = ReplyTurn(
        turn_id=turn_id,
        parts=engine.parts,
        settings=settings,
        plan=engine.plan,
        generator=generator,
        stats=stats,
        logits=logits,
        decoder=ThinkerDecoder(engine.thinker, state.context.cache, state.rope_delta, static=False),
        speak=True,
        assistant_embeds=assistant_embeds,
        context_ids=state.context.all_ids(),
    )
    return reply, state


def _changed(conversation: ConversationState, before: ConversationState) -> bool:
    """Whether the conversation is not as `before` (never, unless a bug fed it: then it goes back)."""
    same = conversation.context.length == before.context.length and [
        id(s) for s in conversation.context.segments
    ] == [id(s) for s in before.context.segments]
    return not same or conversation.history != before.history or conversation.unfed != before.unfed


def audio_samples(events: list[Event]) -> int:
    """Samples of speech among `events` (tests and benches)."""
    return sum(int(e.pcm.size) for e in events if isinstance(e, AudioChunk))
