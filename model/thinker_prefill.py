"""Feeding the Thinker's cache: new segments after the context (positions from the model's own
`get_rope_index`, shifted past it), the whole conversation again, and the context budget."""

from __future__ import annotations

import logging
from typing import Any

import torch

from model.context import (
    MediaIndex,
    Segment,
    ThinkerContext,
    has_frames,
    merge_segments,
    rope_positions,
    user_position_mask,
    without_frames,
)
from model.conversation_state import ConversationState
from model.live_turn import LivePrefix
from model.media_input import InputError
from model.model_parts import ModelParts
from model.talker_prompt import TalkerMemory, share_talker_parts, talker_user_embeds

log = logging.getLogger(__name__)

CONTEXT_LOW_WATER = 0.75  # when the budget is hit, make room down to this share of it


def positions_after(
    parts: ModelParts, state: ConversationState, ids: torch.Tensor, media: MediaIndex
) -> torch.Tensor:
    """Positions (4, 1, n) of `ids` appended after everything in the context."""
    start = state.context.length
    return rope_positions(
        parts.thinker.model, ids, media, cache_start=start, position_start=start + state.rope_delta
    )


def thinker_forward(
    parts: ModelParts,
    context: ThinkerContext,
    ids: torch.Tensor,
    positions: torch.Tensor,
    media: dict[str, Any],
) -> Any:
    """One Thinker pass over `ids` (n,) at `positions` (4, 1, n), extending the cache."""
    from transformers import DynamicCache

    thinker, device = parts.thinker, parts.device
    if context.cache is None:
        context.cache = DynamicCache(config=thinker.config.text_config)
    return thinker.model(
        input_ids=ids.view(1, -1).to(device),
        position_ids=positions.to(device),
        past_key_values=context.cache,
        use_cache=True,
        output_hidden_states=parts.talker is not None,
        **{k: _to_model(v, k, device, thinker.dtype) for k, v in media.items()},
    )


def prefill(
    parts: ModelParts,
    state: ConversationState,
    segments: list[Segment],
    need_talker: bool,
    done: LivePrefix | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Feed segments to the Thinker in one pass (less the `done` part a live turn already fed);
    returns the last position's logits and, for the Talker, the Thinker embeddings of the
    assistant start (the last three tokens)."""
    segment = merge_segments(segments) if len(segments) > 1 else segments[0]
    full_ids = state.context.all_ids(segment.ids)
    positions = done.positions if done is not None else None
    if positions is None:
        positions = positions_after(parts, state, segment.ids, MediaIndex.of([segment]))
    skip = done.tokens if done else 0
    new_ids = segment.ids[skip:]
    n = int(new_ids.shape[0])
    media = done.remaining_media(segment.media) if done else segment.media
    out = thinker_forward(parts, state.context, new_ids, positions[:, :, -n:], media)
    state.rope_delta = int(positions[1:].max()) + 1 - int(full_ids.shape[0])
    if parts.talker is not None:
        users = user_position_mask(full_ids, parts.im_start_id, parts.user_id)[-int(segment.ids.shape[0]) :]
        talker_ids, embeds = talker_user_embeds(parts, new_ids, users[skip:], out.hidden_states)
        if done is not None and done.talker_ids is not None:
            talker_ids = torch.cat((done.talker_ids, talker_ids))
            embeds = torch.cat((done.talker_embeds, embeds))  # type: ignore[arg-type]
        share_talker_parts(segments, users, talker_ids, embeds)
        # A user turn heard alone starts at 0: its Thinker positions, shifted (it starts with text).
        start = 0
        for part in segments:
            n_part = int(part.ids.shape[0])
            if part.talker_ids is not None:
                own = positions[1:, 0, start : start + n_part][:, users[start : start + n_part]]
                part.talker_positions = own - own[:, :1]
            start += n_part
    state.context.segments.extend(segments)
    logits = parts.thinker.lm_head(out.last_hidden_state[:, -1:])
    assistant = out.hidden_states[0][:, -3:] if need_talker else None
    return logits, assistant


def rebuild(parts: ModelParts, state: ConversationState) -> None:
    """Prefill the context's segments again in one pass, on a new cache (the Talker's starts over)."""
    segments = state.context.segments
    state.context = ThinkerContext()
    state.rope_delta = 0
    state.talker = TalkerMemory()
    if segments:
        with torch.inference_mode():
            prefill(parts, state, segments, need_talker=False)


def fit_budget(
    parts: ModelParts, state: ConversationState, incoming: int, budget: int, reply_tokens: int
) -> bool:
    """Keep the context within `budget` tokens with room for `incoming` and a reply: old turns'
    images and camera frames leave first (their audio stays), then the oldest turns; the cache is
    rebuilt once if anything left. Returns whether it was."""
    reserve = incoming + reply_tokens
    if state.context.length + reserve <= budget:
        return False
    target = int(budget * CONTEXT_LOW_WATER) - reserve
    segments = list(state.context.segments)

    def length() -> int:
        return sum(int(s.ids.shape[0]) for s in segments)

    while length() > target:
        framed = next((i for i, s in enumerate(segments) if has_frames(s)), None)
        if framed is not None:
            segments[framed] = without_frames(segments[framed], parts.visual_token_ids)
            continue
        users = [i for i, s in enumerate(segments) if s.kind == "user"]
        if len(users) < 2:
            break
        del segments[users[0] : users[1]]
    if length() + reserve > budget:
        raise InputError(f"this turn needs {incoming} tokens; the context holds {budget}")
    log.info("context budget: %d -> %d tokens, rebuilding the cache", state.context.length, length())
    state.context.segments = segments
    rebuild(parts, state)
    return True


def crop_cache(context: ThinkerContext, length: int) -> None:
    """Cut the cache (not the segments) back to `length` positions: a live turn's windows."""
    cache = context.cache
    if cache is not None and cache.get_seq_length() > length:
        cache.crop(length - cache.get_seq_length())


def _to_model(value: torch.Tensor, key: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if value.is_floating_point() and key != "video_second_per_grid":
        return value.to(device, dtype)
    return value.to(device)
