"""A text answer that leaves no trace: the engine side of the Realtime protocol's out-of-band
response (`response.create` with `conversation: "none"`). The model hears a turn, on a context of
its own (the response's `input`) or after the conversation, and answers greedily in text; the
conversation is left as it was. The app asks for the words of a spoken yes or no to a tool this
way, so the answer never enters the conversation the model sees."""

from __future__ import annotations

import torch

from model import live_prefill, thinker_prefill
from model.context import Segment
from model.conversation_state import ConversationState
from model.device_sampling import DeviceSampler
from model.media_input import InputError, UserTurn
from model.prompt import PromptFormat
from model.sampling import Sampling
from model.thinker_decode import ThinkerDecoder

ASIDE_MAX_TOKENS = 48  # a yes or no, or a short transcript


def answer_aside(
    prompt: PromptFormat,
    conversation: ConversationState,
    turn: UserTurn,
    *,
    in_conversation: bool,
    budget_tokens: int,
    max_tokens: int = ASIDE_MAX_TOKENS,
) -> str:
    """The model's greedy text answer to `turn`, heard after the conversation (`in_conversation`)
    or alone after `prompt`'s system turn. A turn being spoken is forgotten first (its audio is
    in `turn`), and the conversation's cache goes back to where it was."""
    if turn.is_empty:
        raise InputError("the turn is empty (no text, audio or image)")
    ids: list[int] = []
    with torch.inference_mode():
        live_prefill.abandon(conversation)
        state = conversation if in_conversation else ConversationState()
        saved = state.snapshot()
        try:
            segments = prompt.turn_segments(turn, prompt.lead_segments(state.context.segments, state.unfed))
            incoming = sum(int(s.ids.shape[0]) for s in segments)
            if state.context.length + incoming + max_tokens > budget_tokens:
                raise InputError(f"no room in the model's context ({budget_tokens} tokens) for this turn")
            ids = _decode(prompt, state, segments, max_tokens, static=None if in_conversation else False)
        finally:
            if in_conversation and not state.restore(saved):
                thinker_prefill.rebuild(prompt.parts, state)
    return str(prompt.parts.tokenizer.decode(ids, skip_special_tokens=True)).strip()


def _decode(
    prompt: PromptFormat,
    state: ConversationState,
    segments: list[Segment],
    max_tokens: int,
    static: bool | None,
) -> list[int]:
    """Prefill `segments` after the context and choose greedily until the end token (through the
    sampler's `choose`, as a reply does). A context of its own decodes without static buffers,
    which belong to the conversation's cache."""
    parts = prompt.parts
    logits, _ = thinker_prefill.prefill(parts, state, segments, need_talker=False)
    decoder = ThinkerDecoder(parts.thinker, state.context.cache, state.rope_delta, static=static)
    vocab = int(parts.thinker.config.text_config.vocab_size)
    sampler = DeviceSampler(Sampling(do_sample=False), vocab, device=parts.device)
    ids: list[int] = []
    while len(ids) < max_tokens:
        chosen = sampler.choose(logits[:, -1])
        if int(chosen) in parts.eos_ids:
            break
        ids.append(int(chosen))
        logits = decoder.step(chosen.view(1, 1))
    decoder.finish()
    return ids
