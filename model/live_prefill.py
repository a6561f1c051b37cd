"""The turn being spoken, prefilled window by window (`Engine.listen`), and at its end the segments
that reuse what was fed: the verified windows stay in the cache, only the tail is encoded then.
The data it keeps is in `live_turn.py`; why windows encode alike with or without the rest is there."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from model.context import MediaIndex, Segment, user_position_mask
from model.conversation_state import ConversationState
from model.live_turn import (
    LivePrefix,
    LiveTurn,
    LiveWindow,
    PixelRows,
    prefix_of,
    tail_positions,
    to_model_audio,
    verified_windows,
)
from model.media_input import MODEL_AUDIO_RATE_HZ, UserTurn, fit_frames, prepare_audio, prepare_video
from model.model_parts import ModelParts
from model.prompt import PromptFormat
from model.talker_prompt import talker_user_embeds
from model.thinker_prefill import crop_cache, positions_after, thinker_forward
from model.turn_features import final_windows, turn_features, window_end, window_features

log = logging.getLogger(__name__)


def listen(
    prompt: PromptFormat,
    state: ConversationState,
    audio: Any,
    frames: Sequence[Any],
    fps: float | None,
    speak: bool,
) -> int:
    """Add audio and frames to the turn being spoken and prefill every window that became final;
    a failure drops the live windows (the turn is prefilled whole at its end). Returns windows fed."""
    if state.live is None:
        state.live = LiveTurn(mark=state.context.length, fps=fps)
    live = state.live
    live.audio.append(to_model_audio(audio))
    live.frames.extend(np.asarray(f) for f in frames)
    try:
        with torch.inference_mode():
            while _window_ready(prompt.parts, live):
                _prefill_window(prompt, state, live, speak)
    except Exception:
        log.exception("live prefill failed; this turn will be prefilled when it ends")
        crop_cache(state.context, live.mark)
        live.windows.clear()
        live.fps = None if live.fps is None else -1.0  # no more windows for this turn
    return len(live.windows)


def abandon(state: ConversationState) -> None:
    """Forget the turn being spoken: the cache goes back to where it began."""
    if state.live is not None:
        crop_cache(state.context, state.live.mark)
        state.live = None
        state.talker.live = 0


def live_segments(
    prompt: PromptFormat, state: ConversationState, turn: UserTurn
) -> tuple[list[Segment], LivePrefix | None]:
    """This turn's segments, built from the windows fed while it was spoken (those that encoded
    exactly what the whole turn holds) plus its tail, so that the end of the turn costs only the
    tail; everything else leaves the cache. Without usable windows: the one-shot segments."""
    parts = prompt.parts
    live, state.live = state.live, None
    assert live is not None
    usable = live.windows and turn.audio is not None and not turn.images
    usable = usable and (turn.video is None) == (live.fps is None)
    lead = prompt.lead_segments(state.context.segments, state.unfed)
    if not usable:
        crop_cache(state.context, live.mark)
        state.talker.live = 0
        return prompt.turn_segments(turn, lead), None
    audio = prepare_audio(turn.audio, turn.audio_rate_hz)
    ok = _kept_windows(live, audio, turn)
    done = prefix_of(live, ok)
    crop_cache(state.context, live.mark + (done.tokens if done else 0))
    if live.talker_origin is not None:
        state.talker.live = sum(
            int(w.talker_embeds.shape[0]) for w in live.windows[:ok] if w.talker_embeds is not None
        )
    if done is None:
        return prompt.turn_segments(turn, lead), None
    kept = live.windows[:ok]
    extractor, mel = parts.processor.feature_extractor, parts.audio_window[0]
    features = turn_features(extractor, audio, mel, [w.features for w in kept], kept[-1].loudest)
    fed = torch.cat([w.ids for w in kept])[sum(int(s.ids.shape[0]) for s in lead) :]
    tail_ids, media, tail = _tail(prompt, turn, features, kept, live.pixels)
    fed_media = (parts.audio_tokens(done.mel_frames), done.grids)
    start = state.context.length + done.tokens
    positions = tail_positions(parts.thinker.model, tail_ids, tail, live.span_start, fed_media, start)
    if positions is not None:
        fed_positions = [w.positions for w in kept if w.positions is not None]
        done = replace(done, positions=torch.cat([*fed_positions, positions], dim=2))
    return [*lead, Segment(ids=torch.cat((fed, tail_ids)), kind="user", media=media)], done


def _kept_windows(live: LiveTurn, audio: np.ndarray, turn: UserTurn) -> int:
    """The fed windows that stay: those that encoded what the whole turn holds, less any that
    would leave the tail without a camera frame (a turn can end just after a window)."""
    video = turn.video
    if (None if video is None else float(video.fps)) != live.fps:
        return 0
    ok = verified_windows(live, audio, video)
    fed_frames = [0 if w.frames is None else int(w.frames.shape[0]) for w in live.windows]
    while video is not None and ok and sum(fed_frames[:ok]) >= len(video.frames):
        ok -= 1
    return ok


def _window_ready(parts: ModelParts, live: LiveTurn) -> bool:
    mel, _tokens = parts.audio_window
    k = len(live.windows) + 1
    if final_windows(live.samples, int(parts.processor.feature_extractor.hop_length), mel) < k:
        return False
    if live.fps is None:
        return True
    per_window = _frames_per_window(parts, live.fps)
    return per_window is not None and len(live.frames) >= k * per_window


def _frames_per_window(parts: ModelParts, fps: float) -> int | None:
    """Camera frames in one audio window, if they make whole frame pairs (else no live windows)."""
    mel, _tokens = parts.audio_window
    seconds = mel * int(parts.processor.feature_extractor.hop_length) / MODEL_AUDIO_RATE_HZ
    frames = seconds * fps
    pair = int(parts.processor.video_processor.temporal_patch_size)
    return int(frames) if fps > 0 and frames == int(frames) and int(frames) % pair == 0 else None


def _interleaved(
    prompt: PromptFormat, grid: torch.Tensor, fps: float, audio_tokens: int
) -> tuple[str, float]:
    """The processor's audio-in-video text for `grid` frame pairs with `audio_tokens` audio tokens,
    and the seconds per frame pair."""
    processor = prompt.parts.processor
    seconds_per_grid = float(processor.video_processor.temporal_patch_size) / fps
    text = processor.replace_video_with_audio_token(
        {"video_grid_thw": grid, "video_second_per_grid": [seconds_per_grid]},
        0,
        {"num_audio_tokens": [audio_tokens]},
        0,
        position_id_per_seconds=processor.position_id_per_seconds,
    )
    return text, seconds_per_grid


def _prefill_window(prompt: PromptFormat, state: ConversationState, live: LiveTurn, speak: bool) -> None:
    """Encode and prefill the next window of the live turn (the turn's opening tokens first)."""
    parts = prompt.parts
    mel, tokens = parts.audio_window
    k = len(live.windows)
    loudest = live.windows[-1].loudest if live.windows else None
    extractor = parts.processor.feature_extractor
    features, loudest = window_features(extractor, live.audio_array(), k, mel, loudest)
    config = parts.model.config.thinker_config
    media: dict[str, torch.Tensor] = {
        "input_features": features,
        "feature_attention_mask": torch.ones((1, mel), dtype=torch.long),
    }
    partial: dict[str, torch.Tensor] = {
        "feature_attention_mask": torch.ones((1, (k + 1) * mel), dtype=torch.long)
    }
    closers = [config.audio_end_token_id]
    pixels, grids, frames = None, 0, None
    if live.fps is None:
        media_ids = torch.full((tokens,), config.audio_token_id, dtype=torch.long)
    else:
        per_window = _frames_per_window(parts, live.fps)
        assert per_window is not None
        frames = fit_frames(
            np.stack(live.frames[k * per_window : (k + 1) * per_window]), prompt.video_max_pixels
        )
        video = parts.processor.video_processor(
            videos=[frames], return_tensors="pt", **prompt.video_kwargs(live.fps)
        )
        pixels, grid = video["pixel_values_videos"], video["video_grid_thw"]
        grids = int(grid[0, 0])
        text, seconds_per_grid = _interleaved(prompt, grid, live.fps, tokens)
        media_ids = parts.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0][1:-1]
        media.update(pixel_values_videos=pixels, video_grid_thw=grid)
        partial.update(
            video_grid_thw=torch.tensor([[grids * (k + 1), int(grid[0, 1]), int(grid[0, 2])]]),
            video_second_per_grid=torch.tensor([seconds_per_grid]),
        )
        closers.append(config.vision_end_token_id)
    ids = torch.cat((_live_opening(prompt, state, live), media_ids)) if k == 0 else media_ids
    fed = live.fed_ids()
    skip = int(fed.shape[0])
    sequence = torch.cat((fed, ids, torch.tensor(closers, dtype=torch.long)))
    full_ids = state.context.all_ids(sequence)
    positions = positions_after(parts, state, sequence, MediaIndex.of([Segment(sequence, media=partial)]))
    start, n = state.context.length + skip, int(ids.shape[0])
    out = thinker_forward(parts, state.context, ids, positions[:, :, skip : skip + n], media)
    samples = window_end(k, int(extractor.hop_length), mel)
    window = LiveWindow(ids, features, loudest, samples, frames=frames, grids=grids)
    if pixels is not None:
        window.pixel_rows = int(pixels.shape[0])
        live.pixels.put(sum(w.pixel_rows for w in live.windows), pixels, spare=2 * window.pixel_rows)
    window.positions = positions[:, :, skip : skip + n]
    if k == 0:
        live.span_start = int(positions[1, 0, n - int(media_ids.shape[0])])
    if parts.talker is not None:
        users = user_position_mask(full_ids, parts.im_start_id, parts.user_id)[start : start + n]
        window.talker_ids, window.talker_embeds = talker_user_embeds(parts, ids, users, out.hidden_states)
        if speak:
            _talker_hear_live(parts, state, live, window, positions[1:, 0, skip : skip + n][:, users])
    live.windows.append(window)


def _talker_hear_live(
    parts: ModelParts,
    state: ConversationState,
    live: LiveTurn,
    window: LiveWindow,
    thinker_positions: torch.Tensor,
) -> None:
    """Feed the Talker a live window's user positions now, so the reply feeds it only the rest.
    Skipped (the reply then feeds the whole turn) when earlier user turns are not in its cache."""
    if window.talker_embeds is None or not window.talker_embeds.shape[0]:
        return
    memory = state.talker
    if not live.windows:
        unheard = memory.sync(parts, state.context.segments, keep_live=False)
        live.talker_origin = None if unheard else float(thinker_positions[0, 0])
    if live.talker_origin is None:
        return
    relative = thinker_positions - live.talker_origin + memory.next_position()
    cached = memory.cache.get_seq_length()
    text = torch.arange(cached, cached + relative.shape[1], dtype=relative.dtype).view(1, -1)
    parts.talker.model(
        inputs_embeds=window.talker_embeds.unsqueeze(0).to(parts.talker.dtype),
        position_ids=torch.cat((text, relative)).unsqueeze(1).to(parts.device),
        past_key_values=memory.cache,
        use_cache=True,
    )
    memory.live += int(window.talker_embeds.shape[0])


def _live_opening(prompt: PromptFormat, state: ConversationState, live: LiveTurn) -> torch.Tensor:
    """The tokens of a spoken turn before its first audio token: the system prompt or the close of
    the last reply, the user turn's start, and the media span's opening."""
    processor = prompt.parts.processor
    video = live.fps is not None
    content = [{"type": "video", "video": "camera"}] if video else [{"type": "audio", "audio": "a"}]
    text = prompt.render_user(content)
    marker = processor.video_token if video else processor.audio_token
    head = text[: text.index(marker)] + (processor.audio_bos_token if video else "")
    ids = prompt.parts.tokenizer(head, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    lead = prompt.lead_segments(state.context.segments, state.unfed)
    return torch.cat([*(s.ids for s in lead), ids])


def _tail(
    prompt: PromptFormat,
    turn: UserTurn,
    features: torch.Tensor,
    fed: list[LiveWindow],
    pixels: PixelRows,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], MediaIndex]:
    """The tokens after the fed windows (the rest of the media span, the typed text, the assistant
    start), the media of the whole turn (the fed windows' pixels reused: only the frames after them
    are fitted and encoded here) and the tail's own media, as `get_rope_index` takes them."""
    parts, processor = prompt.parts, prompt.parts.processor
    fps = None if turn.video is None else float(turn.video.fps)
    total = int(features.shape[-1])
    fed_mel = sum(int(w.features.shape[-1]) for w in fed)
    tail_tokens = parts.audio_tokens(total) - parts.audio_tokens(fed_mel)
    content: list[dict[str, Any]] = [
        {"type": "video", "video": "camera"} if fps else {"type": "audio", "audio": "a"}
    ]
    if turn.text.strip():
        content.append({"type": "text", "text": turn.text})
    text = prompt.render_user(content)
    marker = processor.video_token if fps else processor.audio_token
    after = text[text.index(marker) + len(marker) :]
    media: dict[str, torch.Tensor] = {
        "input_features": features,
        "feature_attention_mask": torch.ones((1, total), dtype=torch.int32),
    }
    tail = MediaIndex(torch.tensor([total - fed_mel]), None, None, None)
    if fps is None:
        span = processor.audio_token * tail_tokens + after
    else:
        assert turn.video is not None
        frames_done = sum(w.frames.shape[0] for w in fed if w.frames is not None)
        frames, _ = prepare_video(turn.video, prompt.video_max_pixels, start=frames_done)
        video = processor.video_processor(videos=[frames], return_tensors="pt", **prompt.video_kwargs(fps))
        grid = video["video_grid_thw"].clone()
        interleaved, seconds_per_grid = _interleaved(prompt, grid, fps, tail_tokens)
        span = interleaved[len(processor.audio_bos_token) :] + after
        tail = MediaIndex(tail.audio_lengths, None, grid.clone(), torch.tensor([seconds_per_grid]))
        grid[0, 0] += sum(w.grids for w in fed)
        media.update(
            pixel_values_videos=pixels.put(sum(w.pixel_rows for w in fed), video["pixel_values_videos"], 0),
            video_grid_thw=grid,
            video_second_per_grid=torch.tensor([seconds_per_grid]),
        )
    ids = parts.tokenizer(span, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    return ids, media, tail
