"""What the Talker hears: the user turns (kept in its cache across turns), each reply's start with
the voice, and one text embedding per step, laid out as `generate()` lays them out
(`_get_talker_assistant_parts`, `trailing_text_hidden` in transformers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from model.context import Segment, talker_user_part
from model.model_parts import ModelParts


@dataclass(frozen=True)
class TtsSpecial:
    """The Talker's text-side markers, projected: start of speech, end of text, padding after it."""

    bos: torch.Tensor
    eos: torch.Tensor
    pad: torch.Tensor

    @classmethod
    def of(cls, parts: ModelParts) -> TtsSpecial:
        config = parts.model.config
        ids = [config.tts_bos_token_id, config.tts_eos_token_id, config.tts_pad_token_id]
        bos, eos, pad = parts.talker.text_projection(parts.thinker_embed(ids)).chunk(3, dim=1)
        return cls(bos, eos, pad)


@dataclass
class TalkerMemory:
    """The Talker's cache across turns: the user turns it has heard, in order (never the replies:
    each reply's prompt is every user turn so far plus its own start), and the part of the turn
    being spoken that it heard live."""

    cache: Any = None  # transformers DynamicCache
    users: list[Segment] = field(default_factory=list)
    live: int = 0  # Talker tokens in the cache for the turn being spoken

    def next_position(self) -> int:
        """The first TM-RoPE position after the user turns in the cache."""
        return sum(int(s.talker_positions.max()) + 1 for s in self.users if s.talker_positions is not None)

    def sync(self, parts: ModelParts, segments: list[Segment], keep_live: bool = True) -> list[Segment]:
        """Crop the cache to the user turns of `segments` it holds (and what it heard live, with
        `keep_live`); start over if they are not the first of them. Returns the turns not in it yet."""
        from transformers import DynamicCache

        heard = [s for s in segments if s.talker_embeds is not None]
        if self.cache is None or [id(s) for s in heard[: len(self.users)]] != [id(s) for s in self.users]:
            self.cache = DynamicCache(config=parts.talker.config.text_config)
            self.users = []
            self.live = 0
        if not keep_live:
            self.live = 0
        length = sum(talker_length(s) for s in self.users) + self.live
        cached = self.cache.get_seq_length()
        if cached > length:  # the last reply's start and frames, or a live turn given up
            self.cache.crop(length - cached)
        return heard[len(self.users) :]


def talker_length(segment: Segment) -> int:
    return 0 if segment.talker_ids is None else int(segment.talker_ids.shape[0])


def talker_user_embeds(
    parts: ModelParts, ids: torch.Tensor, user_mask: torch.Tensor, hidden_states: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """What the Talker will hear of the user positions of `ids`: media positions through
    `hidden_projection` of the Thinker's `accept_hidden_layer`, text through `text_projection`
    of its embeddings. Returns (ids, embeds) of those positions."""
    talker, device = parts.talker, parts.device
    layer = int(parts.model.config.talker_config.accept_hidden_layer)
    mm = torch.isin(ids, parts.media_token_ids)
    embeds = torch.empty(
        (int(user_mask.sum()), talker.config.text_config.hidden_size), device=device, dtype=talker.dtype
    )
    mm_user = mm[user_mask].to(device)
    mask = user_mask.to(device)
    mm_full = mm.to(device)
    if bool(mm_user.any()):
        embeds[mm_user] = talker.hidden_projection(hidden_states[layer][0][mask & mm_full]).to(talker.dtype)
    if bool((~mm_user).any()):
        embeds[~mm_user] = talker.text_projection(hidden_states[0][0][mask & ~mm_full]).to(talker.dtype)
    return ids[user_mask], embeds


def share_talker_parts(
    segments: list[Segment], user_mask: torch.Tensor, ids: torch.Tensor, embeds: torch.Tensor
) -> None:
    """Hand each segment its own user positions' Talker inputs (in order)."""
    start = done = 0
    for segment in segments:
        count = int(user_mask[start : start + segment.ids.shape[0]].sum())
        start += int(segment.ids.shape[0])
        if count:
            segment.talker_ids = ids[done : done + count]
            segment.talker_embeds = embeds[done : done + count]
            done += count


def trailing_embed(
    parts: ModelParts, reply_ids: list[int], text_done: bool, step: int, special: TtsSpecial
) -> torch.Tensor:
    """The text the Talker reads at `step` (>= 1): reply token `step`, `tts_eos` in place of the
    reply's last token, `tts_pad` after it, as `generate()` lays out `trailing_text_hidden`."""
    last = len(reply_ids) - 1 if text_done else None
    if last is not None and step >= last:
        return special.eos if step == last else special.pad
    return parts.text_embed(reply_ids[step])


def talker_prompt(
    parts: ModelParts,
    memory: TalkerMemory,
    segments: list[Segment],
    speaker: str,
    assistant_embeds: torch.Tensor,
    first_text: torch.Tensor,
    special: TtsSpecial,
) -> tuple[torch.Tensor, torch.Tensor, list[Segment]]:
    """The Talker's prompt: every user turn so far, then the assistant start with the voice and
    the first text token (`_get_talker_assistant_parts` in transformers). The user turns already
    in its cache are not fed again. Returns embeds and positions of what is to feed, and the user
    turns among it."""
    talker, config = parts.talker, parts.model.config.talker_config
    start = talker.text_projection(assistant_embeds)
    text_part = torch.cat((start, special.pad.expand(1, 4, -1), special.bos, first_text), dim=1)
    codec_ids = [
        config.codec_nothink_id,
        config.codec_think_bos_id,
        config.codec_think_eos_id,
        parts.speaker_id(speaker),
        config.codec_pad_id,
        config.codec_bos_id,
    ]
    codec = talker.get_input_embeddings()(torch.tensor([codec_ids], device=parts.device))
    zeros = torch.zeros((1, 3, codec.shape[-1]), device=parts.device, dtype=codec.dtype)
    assistant = text_part + torch.cat((zeros, codec), dim=1)
    new_users = memory.sync(parts, segments)
    first_position = memory.next_position()
    user = talker_user_part(new_users, start=first_position)
    if user is not None and memory.live:
        user = (user[0][memory.live :], user[1][:, memory.live :])
    n = int(assistant.shape[1])
    first = first_position if user is None else int(user[1].max()) + 1
    after = (torch.arange(n) + first).expand(3, -1)
    if user is None:
        embeds, mrope = assistant, after
    else:
        embeds = torch.cat((user[0].unsqueeze(0).to(assistant.dtype), assistant), dim=1)
        mrope = torch.cat((user[1], after.to(user[1].dtype)), dim=1)
    cached = memory.cache.get_seq_length()
    text = torch.arange(cached, cached + mrope.shape[1], dtype=mrope.dtype).view(1, -1)
    return embeds, torch.cat((text, mrope)).unsqueeze(1).to(parts.device), new_users
