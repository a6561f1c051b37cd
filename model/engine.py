"""The streaming engine: one conversation with Qwen3-Omni, replies streamed as events.

`Engine.respond()` is a generator of events in the order things happen: `TextDelta` as the Thinker
decodes, `AudioChunk` as the Talker's frames pass through Code2Wav, then `TurnFinished` (or
`EngineError`). The Thinker's KV cache lives across turns; a cancelled reply can be cut back to
what the user heard. Everything here runs in the engine's worker thread; nothing knows of Qt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from transformers.models.qwen3_omni_moe.processing_qwen3_omni_moe import (
    _get_feat_extract_output_lengths as audio_output_length,
)

from events import AudioChunk, EngineError, Event, Message, TextDelta, TurnFinished, TurnStats
from model.code2wav_stream import Code2WavStream
from model.context import (
    MEDIA_KEYS,
    MediaIndex,
    Segment,
    ThinkerContext,
    has_frames,
    merge_segments,
    rope_positions,
    talker_user_part,
    user_position_mask,
    without_frames,
)
from model.device_sampling import DeviceSampler
from model.live_turn import (
    WINDOW_MARGIN_SAMPLES,
    LivePrefix,
    LiveTurn,
    LiveWindow,
    prefix_of,
    to_model_audio,
    verified_windows,
)
from model.media_input import (
    MODEL_AUDIO_RATE_HZ,
    VIDEO_MAX_PIXELS,
    VISION_CELL_PX,
    InputError,
    UserTurn,
    fit_frames,
    prepare_audio,
    prepare_image,
    prepare_video,
)
from model.sampling import SamplingPlan
from model.talker_stream import TalkerStream
from model.text_stream import TextStream
from model.thinker_decode import ThinkerDecoder

log = logging.getLogger(__name__)

CONTEXT_LOW_WATER = 0.75  # when the budget is hit, make room down to this share of it

# Qwen3-Omni's README recommends this system prompt for voice chat.
VOICE_CHAT_PROMPT = (
    "You are a virtual voice assistant with no gender or age.\n"
    "You are communicating with the user.\n"
    "In user messages, “I/me/my/we/our” refer to the user and “you/your” refer to the assistant. In your "
    "replies, address the user as “you/your” and yourself as “I/me/my”; never mirror the user’s "
    "pronouns—always shift perspective. Keep original pronouns only in direct quotes; if a reference is "
    "unclear, ask a brief clarifying question.\n"
    "Interact with users using short(no more than 50 words), brief, straightforward language, maintaining "
    "a natural tone.\n"
    "Never use formal phrasing, mechanical expressions, bullet points, overly structured language. \n"
    "Your output must consist only of the spoken content you want the user to hear. \n"
    "Do not include any descriptions of actions, emotions, sounds, or voice changes. \n"
    "Do not use asterisks, brackets, parentheses, or any other symbols to indicate tone or actions. \n"
    "You must answer users' audio or text questions, do not directly describe the video content. \n"
    "You should communicate in the same language strictly as the user unless they request otherwise.\n"
    "When you are uncertain (e.g., you can't see/hear clearly, don't understand, or the user makes a "
    "comment rather than asking a question), use appropriate questions to guide the user to continue the "
    "conversation.\n"
    "Keep replies concise and conversational, as if talking face-to-face."
)


@dataclass(frozen=True)
class EngineSettings:
    """Per-conversation choices; `sampling=None` takes the checkpoint's generation config."""

    speaker: str = "ethan"
    system_prompt: str = VOICE_CHAT_PROMPT
    speak: bool = True
    max_text_tokens: int = 1024
    max_codec_frames: int = 4096
    first_chunk_frames: int = 1
    chunk_frames: int = 4
    sampling: SamplingPlan | None = None
    seed: int | None = None
    video_max_pixels: int = VIDEO_MAX_PIXELS
    max_context_tokens: int = 32_768


@dataclass
class _Reply:
    """What the turn in progress has produced so far."""

    turn_id: int
    ids: list[int] = field(default_factory=list)
    frames: int = 0
    samples: int = 0
    text_done: bool = False
    cancelled: bool = False
    codes: list[torch.Tensor] = field(default_factory=list)


class Engine:
    """One conversation on one loaded model. Not thread-safe: drive it from one worker thread;
    only `cancel` events may be set from other threads."""

    def __init__(self, model: Any, processor: Any, settings: EngineSettings | None = None) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.settings = settings or EngineSettings()
        self.thinker = model.thinker
        self.talker: Any = model.talker if getattr(model, "has_talker", False) else None
        self.device = self.thinker.device
        config = model.config
        self.im_start_id = int(config.im_start_token_id)
        self.im_end_id = int(config.im_end_token_id)
        self.user_id = int(config.user_token_id)
        thinker_config = config.thinker_config
        self.media_token_ids = torch.tensor(
            [thinker_config.audio_token_id, thinker_config.image_token_id, thinker_config.video_token_id]
        )
        self.visual_token_ids = torch.tensor(
            [
                thinker_config.vision_start_token_id,
                thinker_config.vision_end_token_id,
                thinker_config.image_token_id,
                thinker_config.video_token_id,
            ]
        )
        self.eos_ids = {self.im_end_id}
        self.closing_ids = self.tokenizer("<|im_end|>\n", add_special_tokens=False)["input_ids"]
        if self.talker is not None:
            _check_talker_rope_matches(thinker_config, config.talker_config)
        self.plan = self.settings.sampling or SamplingPlan.from_generation_config(model.generation_config)
        self.history: list[Message] = []
        self.context = ThinkerContext()
        self._unfed: list[int] = []
        self._last_reply: tuple[int, int, list[int]] | None = None  # (turn_id, context length, ids)
        self._rope_delta = 0
        self._talker_cache: Any = None
        self._talker_live = 0  # Talker tokens in its cache for the turn being spoken
        self._talker_users: list[Segment] = []  # whose Talker inputs are in `_talker_cache`, in order
        self._live: LiveTurn | None = None
        config = model.config.thinker_config.audio_config
        mel = int(config.n_window_infer)
        self._audio_n_window = int(config.n_window)
        self._audio_window = (mel, int(audio_output_length(torch.tensor(mel), self._audio_n_window)))
        self.last_codes: torch.Tensor | None = None  # (16, frames) of the last reply, for tests and export
        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(self.settings.seed if self.settings.seed is not None else time.time_ns())
        if self.settings.speak and self.talker is not None:
            self._speaker_id(self.settings.speaker)

    # -- conversation -------------------------------------------------------------------------

    @property
    def can_speak(self) -> bool:
        return self.talker is not None

    def configure(self, **changes: Any) -> None:
        """Change settings; a new system prompt starts a new conversation."""
        new = replace(self.settings, **changes)
        if new.speak and self.talker is not None:
            self._speaker_id(new.speaker)
        restart = new.system_prompt != self.settings.system_prompt
        self.settings = new
        if new.sampling is not None:
            self.plan = new.sampling
        if restart:
            self.new_conversation()

    def new_conversation(self) -> None:
        self._live = None
        self._talker_live = 0
        self.history = []
        self.context = ThinkerContext()
        self._rope_delta = 0
        self._talker_cache = None
        self._unfed = []
        self._last_reply = None

    @property
    def last_reply_ids(self) -> list[int]:
        """Token ids of the last reply as generated (its end token included), or [] before one."""
        return list(self._last_reply[2]) if self._last_reply else []

    def rebuild_cache(self) -> None:
        """Prefill the whole conversation again in one pass (after dropping media, or to check that
        the turn-by-turn cache equals a one-shot prefill)."""
        segments = self.context.segments
        self.context = ThinkerContext()
        self._rope_delta = 0
        self._talker_cache = None
        self._talker_live = 0
        if segments:
            with torch.inference_mode():
                self._prefill(segments, need_talker=False)

    def remember_exchange(self, turn: UserTurn, reply: str, turn_id: int) -> None:
        """Put an earlier exchange back without generating (a client restoring its conversation into
        a new engine): the user turn, then the reply's text as if it had been said, prefilled in one
        pass; the context budget applies as for a new turn."""
        self.abandon_turn()
        if turn.is_empty:
            raise InputError("the turn is empty (no text, audio or image)")
        ids = list(self.tokenizer(reply, add_special_tokens=False)["input_ids"])
        with torch.inference_mode():
            segments = self._turn_segments(turn)
            if ids:
                segments.append(Segment(ids=torch.tensor(ids, dtype=torch.long), kind="reply"))
            self._fit_budget(sum(int(s.ids.shape[0]) for s in segments))
            self._prefill(segments, need_talker=False)
        self._unfed = []
        self._last_reply = (turn_id, self.context.length - len(ids), [*ids, self.im_end_id])
        audio_s = 0.0 if turn.audio is None else len(np.asarray(turn.audio)) / turn.audio_rate_hz
        user_text = turn.text or ("(spoken)" if turn.audio is not None else "(image)")
        self.history += [
            Message("user", user_text, turn_id, audio_s=audio_s),
            Message("assistant", reply, turn_id),
        ]

    def truncate_last_reply(self, heard_samples: int) -> str:
        """Keep of the last reply only what the user heard (its text up to the frames played);
        the history marks it interrupted and the KV cache is cropped to match. Returns the kept text."""
        if self._last_reply is None or not self.history or self.history[-1].role != "assistant":
            raise ValueError("there is no reply to truncate")
        self.abandon_turn()  # a turn heard meanwhile sits after the reply in the cache
        turn_id, start, ids = self._last_reply
        samples_per_frame = int(self.model.code2wav.total_upsample) if self.talker is not None else 1
        heard_frames = -(-max(0, heard_samples) // samples_per_frame)
        spoken = [t for t in ids if t not in self.eos_ids]
        keep = spoken[: min(len(spoken), heard_frames)]
        self.context.crop(start + len(keep))
        self._unfed = keep[self.context.length - start :]
        text = self.tokenizer.decode(keep, skip_special_tokens=True)
        self.history[-1] = replace(self.history[-1], text=text, interrupted=True)
        self._last_reply = (turn_id, start, keep)
        return text

    # -- a turn heard while it is spoken -------------------------------------------------------

    def listen(self, audio: Any, frames: Sequence[Any] = (), fps: float | None = None) -> int:
        """Feed the turn being spoken: more 16 kHz mono audio, and camera frames at `fps` counted from
        the start of the audio. Every encoder window that became final is prefilled now, so that
        `respond()` at the end of the turn has only the last part left. Returns windows prefilled."""
        if self._live is None:
            self._live = LiveTurn(mark=self.context.length, fps=fps)
        live = self._live
        live.audio.append(to_model_audio(audio))
        live.frames.extend(np.asarray(f) for f in frames)
        try:
            with torch.inference_mode():
                while self._window_ready(live):
                    self._prefill_window(live)
        except Exception:
            log.exception("live prefill failed; this turn will be prefilled when it ends")
            self._crop_cache(live.mark)
            live.windows.clear()
            live.fps = None if live.fps is None else -1.0  # no more windows for this turn
        return len(live.windows)

    def abandon_turn(self) -> None:
        """Forget the turn being spoken (too short, noise, a false barge-in): the cache goes back to
        where the turn began and nothing of it stays."""
        if self._live is not None:
            self._crop_cache(self._live.mark)
            self._live = None
            self._talker_live = 0

    def _crop_cache(self, length: int) -> None:
        cache = self.context.cache
        if cache is not None and cache.get_seq_length() > length:
            cache.crop(length - cache.get_seq_length())

    def _window_ready(self, live: LiveTurn) -> bool:
        mel, _tokens = self._audio_window
        hop = int(self.processor.feature_extractor.hop_length)
        k = len(live.windows) + 1
        if live.samples < k * mel * hop + WINDOW_MARGIN_SAMPLES:
            return False
        if live.fps is None:
            return True
        per_window = self._frames_per_window(live.fps)
        return per_window is not None and len(live.frames) >= k * per_window

    def _frames_per_window(self, fps: float) -> int | None:
        """Camera frames in one audio window, if they make whole frame pairs (else no live windows)."""
        mel, _tokens = self._audio_window
        seconds = mel * int(self.processor.feature_extractor.hop_length) / MODEL_AUDIO_RATE_HZ
        frames = seconds * fps
        pair = int(self.processor.video_processor.temporal_patch_size)
        return int(frames) if fps > 0 and frames == int(frames) and int(frames) % pair == 0 else None

    def _prefill_window(self, live: LiveTurn) -> None:
        """Encode and prefill the next window of the live turn (the turn's opening tokens first)."""
        mel, tokens = self._audio_window
        k = len(live.windows)
        features = self._features(live.audio_array())[..., k * mel : (k + 1) * mel]
        config = self.model.config.thinker_config
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
            per_window = self._frames_per_window(live.fps)
            assert per_window is not None
            frames = fit_frames(
                np.stack(live.frames[k * per_window : (k + 1) * per_window]), self.settings.video_max_pixels
            )
            video = self.processor.video_processor(
                videos=[frames], return_tensors="pt", **self._video_kwargs(live.fps)
            )
            pixels, grid = video["pixel_values_videos"], video["video_grid_thw"]
            grids = int(grid[0, 0])
            seconds_per_grid = float(self.processor.video_processor.temporal_patch_size) / live.fps
            text = self.processor.replace_video_with_audio_token(
                {"video_grid_thw": grid, "video_second_per_grid": [seconds_per_grid]},
                0,
                {"num_audio_tokens": [tokens]},
                0,
                position_id_per_seconds=self.processor.position_id_per_seconds,
            )
            media_ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0][
                1:-1
            ]
            media.update(pixel_values_videos=pixels, video_grid_thw=grid)
            partial.update(
                video_grid_thw=torch.tensor([[grids * (k + 1), int(grid[0, 1]), int(grid[0, 2])]]),
                video_second_per_grid=torch.tensor([seconds_per_grid]),
            )
            closers.append(config.vision_end_token_id)
        ids = torch.cat((self._live_opening(live), media_ids)) if k == 0 else media_ids
        fed = live.fed_ids()
        sequence = torch.cat((fed, ids, torch.tensor(closers, dtype=torch.long)))
        full_ids = self.context.all_ids(sequence)
        positions = self._positions_after_context(sequence, MediaIndex.of([Segment(sequence, media=partial)]))
        start, n = self.context.length + int(fed.shape[0]), int(ids.shape[0])
        out = self._thinker_forward(ids, positions[:, :, int(fed.shape[0]) : int(fed.shape[0]) + n], media)
        window = LiveWindow(ids=ids, features=features, pixels=pixels, frames=frames, grids=grids)
        if self.talker is not None:
            users = user_position_mask(full_ids, self.im_start_id, self.user_id)[start : start + n]
            window.talker_ids, window.talker_embeds = self._talker_user_embeds(ids, users, out.hidden_states)
            own = positions[1:, 0, int(fed.shape[0]) : int(fed.shape[0]) + n][:, users]
            self._talker_hear_live(live, window, own)
        live.windows.append(window)

    def _talker_hear_live(self, live: LiveTurn, window: LiveWindow, thinker_positions: torch.Tensor) -> None:
        """Feed the Talker a live window's user positions now, so the reply feeds it only the rest.
        Skipped (the reply then feeds the whole turn) when earlier user turns are not in its cache."""
        if window.talker_embeds is None or not window.talker_embeds.shape[0] or not self.settings.speak:
            return
        if not live.windows:
            unheard = self._sync_talker_cache(keep_live=False)
            live.talker_origin = None if unheard else float(thinker_positions[0, 0])
        if live.talker_origin is None:
            return
        relative = thinker_positions - live.talker_origin + self._talker_next_position()
        cached = self._talker_cache.get_seq_length()
        text = torch.arange(cached, cached + relative.shape[1], dtype=relative.dtype).view(1, -1)
        positions = torch.cat((text, relative)).unsqueeze(1).to(self.device)
        self.talker.model(
            inputs_embeds=window.talker_embeds.unsqueeze(0).to(self.talker.dtype),
            position_ids=positions,
            past_key_values=self._talker_cache,
            use_cache=True,
        )
        self._talker_live += int(window.talker_embeds.shape[0])

    def _live_opening(self, live: LiveTurn) -> torch.Tensor:
        """The tokens of a spoken turn before its first audio token: the system prompt or the close of
        the last reply, the user turn's start, and the media span's opening."""
        content = (
            [{"type": "video", "video": "camera"}]
            if live.fps is not None
            else [{"type": "audio", "audio": "a"}]
        )
        text = self._render_user(content)
        marker = self.processor.video_token if live.fps is not None else self.processor.audio_token
        head = text[: text.index(marker)] + (self.processor.audio_bos_token if live.fps is not None else "")
        ids = self.tokenizer(head, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        return torch.cat([*(s.ids for s in self._lead_segments()), ids])

    def _features(self, audio: np.ndarray) -> torch.Tensor:
        """Log-mel features (1, bins, frames) of 16 kHz audio, as the processor computes them."""
        return self.processor.feature_extractor(
            [audio],
            sampling_rate=MODEL_AUDIO_RATE_HZ,
            padding=True,
            truncation=False,
            return_attention_mask=True,
            return_tensors="pt",
        )["input_features"]

    def _live_segments(self, turn: UserTurn) -> tuple[list[Segment], LivePrefix | None]:
        """This turn's segments, built from the windows fed while it was spoken (those that encoded
        exactly what the whole turn holds) plus its tail, so that the end of the turn costs only the
        tail; everything else leaves the cache. Without usable windows: the one-shot segments."""
        live, self._live = self._live, None
        assert live is not None
        usable = live.windows and turn.audio is not None and not turn.images
        usable = usable and (turn.video is None) == (live.fps is None)
        if not usable:
            self._crop_cache(live.mark)
            self._talker_live = 0
            return self._turn_segments(turn), None
        audio = prepare_audio(turn.audio, turn.audio_rate_hz)
        features = self._features(audio)
        frames = fps = None
        if turn.video is not None:
            frames, fps = prepare_video(turn.video, self.settings.video_max_pixels)
        ok = verified_windows(live, features, frames) if fps in (None, live.fps) else 0
        done = prefix_of(live, ok)
        self._crop_cache(live.mark + (done.tokens if done else 0))
        if live.talker_origin is not None:
            self._talker_live = sum(
                int(w.talker_embeds.shape[0]) for w in live.windows[:ok] if w.talker_embeds is not None
            )
        if done is None:
            return self._turn_segments(turn), None
        lead = self._lead_segments()
        fed = torch.cat([w.ids for w in live.windows[:ok]])[sum(int(s.ids.shape[0]) for s in lead) :]
        tail_ids, media = self._tail(turn, features, frames, fps, live.windows[:ok])
        return [*lead, Segment(ids=torch.cat((fed, tail_ids)), kind="user", media=media)], done

    def _tail(
        self,
        turn: UserTurn,
        features: torch.Tensor,
        frames: np.ndarray | None,
        fps: float | None,
        fed: list[LiveWindow],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The tokens after the fed windows (the rest of the media span, the typed text, the assistant
        start) and the media of the whole turn, the fed windows' pixels reused."""
        mel_done = sum(int(w.features.shape[-1]) for w in fed)
        total = int(features.shape[-1])
        tail_tokens = int(audio_output_length(torch.tensor(total), self._audio_n_window)) - int(
            audio_output_length(torch.tensor(mel_done), self._audio_n_window)
        )
        content: list[dict[str, Any]] = [
            {"type": "video", "video": "camera"} if fps else {"type": "audio", "audio": "a"}
        ]
        if turn.text.strip():
            content.append({"type": "text", "text": turn.text})
        text = self._render_user(content)
        marker = self.processor.video_token if fps else self.processor.audio_token
        after = text[text.index(marker) + len(marker) :]
        media: dict[str, torch.Tensor] = {
            "input_features": features,
            "feature_attention_mask": torch.ones((1, total), dtype=torch.int32),
        }
        if fps is None:
            span = self.processor.audio_token * tail_tokens + after
        else:
            assert frames is not None
            frames_done = sum(w.frames.shape[0] for w in fed if w.frames is not None)
            video = self.processor.video_processor(
                videos=[frames[frames_done:]], return_tensors="pt", **self._video_kwargs(fps)
            )
            grid = video["video_grid_thw"].clone()
            seconds_per_grid = float(self.processor.video_processor.temporal_patch_size) / fps
            interleaved = self.processor.replace_video_with_audio_token(
                {"video_grid_thw": grid, "video_second_per_grid": [seconds_per_grid]},
                0,
                {"num_audio_tokens": [tail_tokens]},
                0,
                position_id_per_seconds=self.processor.position_id_per_seconds,
            )
            span = interleaved[len(self.processor.audio_bos_token) :] + after
            grid[0, 0] += sum(w.grids for w in fed)
            media.update(
                pixel_values_videos=torch.cat(
                    [*(w.pixels for w in fed if w.pixels is not None), video["pixel_values_videos"]]
                ),
                video_grid_thw=grid,
                video_second_per_grid=torch.tensor([seconds_per_grid]),
            )
        ids = self.tokenizer(span, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        return ids, media

    # -- one turn -------------------------------------------------------------------------------

    def respond(self, turn: UserTurn, turn_id: int, cancel: threading.Event | None = None) -> Iterator[Event]:
        """Stream the reply to `turn`. Any failure ends the turn with `EngineError` and leaves the
        conversation as it was before the turn."""
        saved = (
            self._rope_delta,
            self.context,
            list(self.context.segments),
            list(self._unfed),
            list(self.history),
            self._last_reply,
        )
        stats: dict[str, Any] = {"started_s": time.perf_counter()}
        try:
            with torch.inference_mode():
                yield from self._respond(turn, turn_id, cancel or threading.Event(), stats)
        except InputError as error:
            self._restore(saved)
            yield EngineError(turn_id, f"cannot use this turn: {error}")
        except Exception as error:
            log.exception("turn %s failed", turn_id)
            self._restore(saved)
            yield EngineError(turn_id, f"the model failed on this turn: {type(error).__name__}: {error}")

    def _restore(self, saved: tuple[Any, ...]) -> None:
        self._rope_delta, context, segments, unfed, history, last = saved
        self._talker_live = 0
        self._unfed, self.history, self._last_reply = unfed, history, last
        if self.context is context:
            self.context.crop(sum(int(s.ids.shape[0]) for s in segments))
            self.context.segments = segments
        else:  # the budget rebuilt the cache during the failed turn
            self.context = ThinkerContext(segments=segments)
            self.rebuild_cache()

    def _respond(
        self, turn: UserTurn, turn_id: int, cancel: threading.Event, stats: dict[str, Any]
    ) -> Iterator[Event]:
        if turn.is_empty:
            raise InputError("the turn is empty (no text, audio or image)")
        new, done = self._live_segments(turn) if self._live is not None else (self._turn_segments(turn), None)
        new_tokens = sum(int(s.ids.shape[0]) for s in new)
        if self._fit_budget(new_tokens):
            done = None  # the cache was rebuilt without the live windows
        stats["live_prefilled_tokens"] = done.tokens if done else 0
        speak = self.settings.speak and self.talker is not None
        stats["prompt_tokens"] = self.context.length + new_tokens
        stats["new_prompt_tokens"] = new_tokens
        prefill_start = time.perf_counter()
        logits, assistant_embeds = self._prefill(new, need_talker=speak, done=done)
        self._unfed = []
        stats["prefill_done_s"] = time.perf_counter()
        prefill_s = stats["prefill_done_s"] - prefill_start
        user_text = turn.text or ("(spoken)" if turn.audio is not None else "(image)")
        audio_s = 0.0 if turn.audio is None else len(np.asarray(turn.audio)) / turn.audio_rate_hz
        self.history.append(Message("user", user_text, turn_id, audio_s=audio_s))
        reply_start = self.context.length
        reply = _Reply(turn_id)
        text = TextStream(self.tokenizer)
        vocab = int(self.thinker.config.text_config.vocab_size)
        sampler = DeviceSampler(self.plan.thinker, vocab, device=self.device, generator=self._generator)
        # The ids the repetition penalty looks at (the whole conversation, as generate() sees it).
        penalized = self.plan.thinker.repetition_penalty != 1.0
        seen = sampler.seen_mask(self.context.all_ids().view(1, -1)) if penalized else None
        decoder = ThinkerDecoder(self.thinker, self.context.cache, self._rope_delta)
        thinker_s = prefill_s
        timing = {"code2wav_s": 0.0}
        talker: TalkerStream | None = None
        c2w: Code2WavStream | None = None
        pending_frames: list[torch.Tensor] = []
        talker_done = not speak
        special = self._tts_special_embeds() if speak else None

        while not (reply.text_done and talker_done):
            if cancel.is_set():
                reply.cancelled = True
                break
            if not reply.text_done:
                chosen = sampler.choose(logits[:, -1], seen=seen)
                token = int(chosen)  # the step's one read back: the text stream needs the token
                reply.ids.append(token)
                if seen is not None:
                    seen.scatter_(1, chosen, True)
                if token in self.eos_ids or len(reply.ids) >= self.settings.max_text_tokens:
                    reply.text_done = True
                if token not in self.eos_ids:
                    delta = text.push(token)
                    if delta:
                        stats.setdefault("first_text_s", time.perf_counter())
                        yield TextDelta(turn_id, delta)
                if not reply.text_done:
                    start = time.perf_counter()
                    logits = decoder.step(chosen)
                    thinker_s += time.perf_counter() - start
            if talker_done:
                continue
            if talker is None:
                if reply.ids[0] in self.eos_ids:
                    talker_done = True
                    continue
                talker = TalkerStream(
                    self.talker, self.plan.talker, self.plan.code_predictor, generator=self._generator
                )
                c2w = Code2WavStream(self.model.code2wav)
                first = self._text_embed(reply.ids[0])
                embeds, positions, new_users = self._talker_prompt(assistant_embeds, first, special)
                talker.prefill(embeds, positions, self._talker_cache)
                stats["talker_prefill_tokens"] = int(embeds.shape[1])
                self._talker_users.extend(new_users)
                self._talker_live = 0
                continue
            step = reply.frames + 1
            codes, next_code0 = talker.step(self._trailing_embed(reply, step, special))
            reply.frames += 1
            reply.codes.append(codes)
            stats.setdefault("first_frame_s", time.perf_counter())
            pending_frames.append(codes)
            if next_code0 is None or reply.frames >= self.settings.max_codec_frames:
                talker_done = True
            want = self.settings.first_chunk_frames if reply.samples == 0 else self.settings.chunk_frames
            if len(pending_frames) >= want or talker_done:
                yield from self._emit_audio(c2w, pending_frames, reply, stats, timing, final=talker_done)  # type: ignore[arg-type]
                pending_frames = []

        decoder.finish()
        self._finish_reply(reply, reply_start, text.text)
        stats.update(
            finished_s=time.perf_counter(),
            text_tokens=len([t for t in reply.ids if t not in self.eos_ids]),
            codec_frames=reply.frames,
            audio_samples=reply.samples,
            cancelled=reply.cancelled,
            thinker_forward_s=thinker_s,
            talker_forward_s=talker.forward_s if talker else 0.0,
            code2wav_forward_s=timing["code2wav_s"],
        )
        yield TurnFinished(turn_id, TurnStats(**stats))

    def _finish_reply(self, reply: _Reply, start: int, text: str) -> None:
        """Record the reply: its fed tokens stay in the cache, the last one waits for the next turn."""
        fed = reply.ids[:-1] if reply.text_done else reply.ids
        unfed = reply.ids[len(fed) :]
        if fed:
            self.context.segments.append(Segment(ids=torch.tensor(fed, dtype=torch.long), kind="reply"))
        self._unfed = unfed
        self._last_reply = (reply.turn_id, start, list(reply.ids))
        self.last_codes = torch.stack(reply.codes, dim=1) if reply.codes else None
        self.history.append(Message("assistant", text, reply.turn_id, interrupted=reply.cancelled))

    def _emit_audio(
        self,
        c2w: Code2WavStream,
        frames: list[torch.Tensor],
        reply: _Reply,
        stats: dict[str, Any],
        timing: dict[str, float],
        final: bool,
    ) -> Iterator[Event]:
        start = time.perf_counter()
        pcm = c2w.push(torch.stack(frames, dim=1))
        if final:
            pcm = np.concatenate([pcm, c2w.flush()])
        timing["code2wav_s"] += time.perf_counter() - start
        if pcm.size == 0:
            return
        first_frame = reply.samples // int(self.model.code2wav.total_upsample)
        reply.samples += int(pcm.size)
        stats.setdefault("first_audio_s", time.perf_counter())
        yield AudioChunk(reply.turn_id, pcm.astype(np.float32, copy=False), self.output_rate_hz, first_frame)

    @property
    def output_rate_hz(self) -> int:
        return int(getattr(self.model.config, "output_sample_rate", 24_000))

    # -- prompt building ------------------------------------------------------------------------

    def _turn_segments(self, turn: UserTurn) -> list[Segment]:
        """The new tokens of this turn: the system prompt (first turn) or the close of the previous
        reply, then the user turn and the assistant start with the processor's features for its media."""
        content: list[dict[str, Any]] = []
        audio = images = videos = None
        video_kwargs: dict[str, Any] = {}
        if turn.audio is not None:
            audio = [prepare_audio(turn.audio, turn.audio_rate_hz)]
        if turn.video is not None:
            if audio is None:
                raise InputError("camera frames go with spoken audio; attach a snapshot image to typed text")
            frames, fps = prepare_video(turn.video, self.settings.video_max_pixels)
            videos = [frames]
            content.append({"type": "video", "video": "camera"})
            video_kwargs = {
                "audio_from_video_indices": [0],
                "load_audio_from_video": True,
                "videos_kwargs": self._video_kwargs(fps),
            }
        elif audio is not None:
            content.append({"type": "audio", "audio": "turn.wav"})
        if turn.images:
            images = [prepare_image(image) for image in turn.images]
            content += [{"type": "image", "image": f"image{i}.png"} for i in range(len(images))]
        if turn.text.strip():
            content.append({"type": "text", "text": turn.text})
        inputs = self.processor(
            text=[self._render_user(content)],
            audio=audio,
            images=images,
            videos=videos,
            return_tensors="pt",
            **video_kwargs,
        )
        media = {k: torch.as_tensor(inputs[k]) for k in MEDIA_KEYS if inputs.get(k) is not None}
        return [*self._lead_segments(), Segment(ids=inputs["input_ids"][0], kind="user", media=media)]

    def _system_messages(self) -> list[dict[str, Any]]:
        prompt = self.settings.system_prompt
        return [{"role": "system", "content": prompt}] if prompt else []

    def _render_user(self, content: list[dict[str, Any]]) -> str:
        """The chat template's text for one user turn and the assistant start (placeholders unexpanded)."""
        system = self._system_messages()
        rendered = self.processor.apply_chat_template(
            [*system, {"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        prefix = self.processor.apply_chat_template(system, tokenize=False) if system else ""
        if not rendered.startswith(prefix):
            raise RuntimeError("the chat template does not render turns one after another")
        return rendered[len(prefix) :]

    def _lead_segments(self) -> list[Segment]:
        """What comes before a user turn: the system prompt on the first, else the close of the last reply."""
        system = self._system_messages()
        if not self.context.segments and system:
            prefix = self.processor.apply_chat_template(system, tokenize=False)
            ids = self.tokenizer(prefix, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
            return [Segment(ids=ids, kind="system")]
        if self.context.segments and self.context.segments[-1].kind != "system":
            closing = self.closing_ids[1:] if self._unfed[-1:] == [self.im_end_id] else self.closing_ids
            return [Segment(ids=torch.tensor(self._unfed + closing, dtype=torch.long), kind="reply")]
        return []

    def _video_kwargs(self, fps: float) -> dict[str, Any]:
        return {
            "fps": fps,
            "do_sample_frames": False,
            "cap_pixels_per_frame": True,
            # Pixel bounds per frame: the frames are already within budget, keep them as they are.
            "size": {"shortest_edge": VISION_CELL_PX**2, "longest_edge": self.settings.video_max_pixels},
        }

    def _fit_budget(self, incoming: int) -> bool:
        """Keep the context within `max_context_tokens`: old turns' images and camera frames leave
        first (their audio stays), then the oldest turns; the cache is rebuilt once if anything left."""
        budget = self.settings.max_context_tokens
        reserve = incoming + self.settings.max_text_tokens
        if self.context.length + reserve <= budget:
            return False
        target = int(budget * CONTEXT_LOW_WATER) - reserve
        segments = list(self.context.segments)

        def length() -> int:
            return sum(int(s.ids.shape[0]) for s in segments)

        while length() > target:
            framed = next((i for i, s in enumerate(segments) if has_frames(s)), None)
            if framed is not None:
                segments[framed] = without_frames(segments[framed], self.visual_token_ids)
                continue
            users = [i for i, s in enumerate(segments) if s.kind == "user"]
            if len(users) < 2:
                break
            del segments[users[0] : users[1]]
        if length() + reserve > budget:
            raise InputError(f"this turn needs {incoming} tokens; the context holds {budget}")
        log.info("context budget: %d -> %d tokens, rebuilding the cache", self.context.length, length())
        self.context.segments = segments
        self.rebuild_cache()
        return True

    def _prefill(
        self, segments: list[Segment], need_talker: bool, done: LivePrefix | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Feed segments to the Thinker in one pass (less the `done` part a live turn already fed);
        returns the last position's logits and, for the Talker, the Thinker embeddings of the
        assistant start (the last three tokens)."""
        segment = merge_segments(segments) if len(segments) > 1 else segments[0]
        full_ids = self.context.all_ids(segment.ids)
        positions = self._positions_after_context(segment.ids, MediaIndex.of([segment]))
        skip = done.tokens if done else 0
        new_ids = segment.ids[skip:]
        n = int(new_ids.shape[0])
        media = done.remaining_media(segment.media) if done else segment.media
        out = self._thinker_forward(new_ids, positions[:, :, -n:], media)
        self._rope_delta = int(positions[1:].max()) + 1 - int(full_ids.shape[0])
        if self.talker is not None:
            users = user_position_mask(full_ids, self.im_start_id, self.user_id)[-int(segment.ids.shape[0]) :]
            talker_ids, embeds = self._talker_user_embeds(new_ids, users[skip:], out.hidden_states)
            if done is not None and done.talker_ids is not None:
                talker_ids = torch.cat((done.talker_ids, talker_ids))
                embeds = torch.cat((done.talker_embeds, embeds))  # type: ignore[arg-type]
            _share_talker_parts(segments, users, talker_ids, embeds)
            # A user turn heard alone starts at 0: its Thinker positions, shifted (it starts with text).
            start = 0
            for part in segments:
                n_part = int(part.ids.shape[0])
                if part.talker_ids is not None:
                    own = positions[1:, 0, start : start + n_part][:, users[start : start + n_part]]
                    part.talker_positions = own - own[:, :1]
                start += n_part
        self.context.segments.extend(segments)
        logits = self.thinker.lm_head(out.last_hidden_state[:, -1:])
        assistant = out.hidden_states[0][:, -3:] if need_talker else None
        return logits, assistant

    def _positions_after_context(self, ids: torch.Tensor, media: MediaIndex) -> torch.Tensor:
        """Positions (4, 1, n) of `ids` appended after everything in the context."""
        start = self.context.length
        return rope_positions(
            self.thinker.model, ids, media, cache_start=start, position_start=start + self._rope_delta
        )

    def _thinker_forward(
        self, ids: torch.Tensor, positions: torch.Tensor, media: dict[str, torch.Tensor]
    ) -> Any:
        """One Thinker pass over `ids` (n,) at `positions` (4, 1, n), extending the cache."""
        from transformers import DynamicCache

        if self.context.cache is None:
            self.context.cache = DynamicCache(config=self.thinker.config.text_config)
        dtype = self.thinker.dtype
        return self.thinker.model(
            input_ids=ids.view(1, -1).to(self.device),
            position_ids=positions.to(self.device),
            past_key_values=self.context.cache,
            use_cache=True,
            output_hidden_states=self.talker is not None,
            **{k: _to_model(v, k, self.device, dtype) for k, v in media.items()},
        )

    def _talker_user_embeds(
        self, ids: torch.Tensor, user_mask: torch.Tensor, hidden_states: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What the Talker will hear of the user positions of `ids`: media positions through
        `hidden_projection` of the Thinker's `accept_hidden_layer`, text through `text_projection`
        of its embeddings. Returns (ids, embeds) of those positions."""
        talker = self.talker
        layer = int(self.model.config.talker_config.accept_hidden_layer)
        mm = torch.isin(ids, self.media_token_ids)
        embeds = torch.empty(
            (int(user_mask.sum()), talker.config.text_config.hidden_size),
            device=self.device,
            dtype=talker.dtype,
        )
        mm_user = mm[user_mask].to(self.device)
        mask = user_mask.to(self.device)
        mm_full = mm.to(self.device)
        if bool(mm_user.any()):
            embeds[mm_user] = talker.hidden_projection(hidden_states[layer][0][mask & mm_full]).to(
                talker.dtype
            )
        if bool((~mm_user).any()):
            embeds[~mm_user] = talker.text_projection(hidden_states[0][0][mask & ~mm_full]).to(talker.dtype)
        return ids[user_mask], embeds

    # -- Talker inputs --------------------------------------------------------------------------

    def _speaker_id(self, speaker: str) -> int:
        ids = self.model.config.talker_config.speaker_id
        if speaker.lower() not in ids:
            raise ValueError(f"unknown voice {speaker!r}; this model has {', '.join(sorted(ids))}")
        return int(ids[speaker.lower()])

    def _thinker_embed(self, token_ids: list[int]) -> torch.Tensor:
        ids = torch.tensor([token_ids], device=self.device)
        return self.thinker.get_input_embeddings()(ids)

    def _text_embed(self, token: int) -> torch.Tensor:
        return self.talker.text_projection(self._thinker_embed([token]))

    def _tts_special_embeds(self) -> dict[str, torch.Tensor]:
        config = self.model.config
        ids = [config.tts_bos_token_id, config.tts_eos_token_id, config.tts_pad_token_id]
        bos, eos, pad = self.talker.text_projection(self._thinker_embed(ids)).chunk(3, dim=1)
        return {"bos": bos, "eos": eos, "pad": pad}

    def _trailing_embed(
        self, reply: _Reply, step: int, special: dict[str, torch.Tensor] | None
    ) -> torch.Tensor:
        """The text the Talker reads at `step` (>= 1): reply token `step`, `tts_eos` in place of the
        reply's last token, `tts_pad` after it, as `generate()` lays out `trailing_text_hidden`."""
        assert special is not None
        last = len(reply.ids) - 1 if reply.text_done else None
        if last is not None and step >= last:
            return special["eos"] if step == last else special["pad"]
        return self._text_embed(reply.ids[step])

    def _talker_prompt(
        self,
        assistant_embeds: torch.Tensor | None,
        first_text: torch.Tensor,
        special: dict[str, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[Segment]]:
        """The Talker's prompt: every user turn so far, then the assistant start with the voice and
        the first text token (`_get_talker_assistant_parts` in transformers). The user turns already
        in the Talker's cache are not fed again. Returns embeds and positions of what is to feed,
        and the user turns among it."""
        assert assistant_embeds is not None and special is not None
        talker, config = self.talker, self.model.config.talker_config
        start = talker.text_projection(assistant_embeds)
        text_part = torch.cat((start, special["pad"].expand(1, 4, -1), special["bos"], first_text), dim=1)
        codec_ids = [
            config.codec_nothink_id,
            config.codec_think_bos_id,
            config.codec_think_eos_id,
            self._speaker_id(self.settings.speaker),
            config.codec_pad_id,
            config.codec_bos_id,
        ]
        codec = talker.get_input_embeddings()(torch.tensor([codec_ids], device=self.device))
        zeros = torch.zeros((1, 3, codec.shape[-1]), device=self.device, dtype=codec.dtype)
        assistant = text_part + torch.cat((zeros, codec), dim=1)
        new_users = self._sync_talker_cache()
        start = self._talker_next_position()
        user = talker_user_part(new_users, start=start)
        if user is not None and self._talker_live:
            user = (user[0][self._talker_live :], user[1][:, self._talker_live :])
        n = int(assistant.shape[1])
        first = start if user is None else int(user[1].max()) + 1
        after = (torch.arange(n) + first).expand(3, -1)
        if user is None:
            embeds, mrope = assistant, after
        else:
            embeds = torch.cat((user[0].unsqueeze(0).to(assistant.dtype), assistant), dim=1)
            mrope = torch.cat((user[1], after.to(user[1].dtype)), dim=1)
        cached = self._talker_cache.get_seq_length()
        text = torch.arange(cached, cached + mrope.shape[1], dtype=mrope.dtype).view(1, -1)
        return embeds, torch.cat((text, mrope)).unsqueeze(1).to(self.device), new_users

    def _sync_talker_cache(self, keep_live: bool = True) -> list[Segment]:
        """Keep in the Talker's cache the user turns it has heard (never the replies: each reply's
        prompt is every user turn so far plus its own start), and the part of the turn being spoken
        it heard live (`keep_live`); returns the user turns not in it yet."""
        from transformers import DynamicCache

        parts = [s for s in self.context.segments if s.talker_embeds is not None]
        heard = self._talker_users
        if self._talker_cache is None or [id(s) for s in parts[: len(heard)]] != [id(s) for s in heard]:
            self._talker_cache = DynamicCache(config=self.talker.config.text_config)
            self._talker_users = []
            self._talker_live = 0
        if not keep_live:
            self._talker_live = 0
        length = sum(_talker_length(s) for s in self._talker_users) + self._talker_live
        cached = self._talker_cache.get_seq_length()
        if cached > length:  # the last reply's start and frames, or a live turn given up
            self._talker_cache.crop(length - cached)
        return parts[len(self._talker_users) :]

    def _talker_next_position(self) -> int:
        """The Talker's first TM-RoPE position after the user turns in its cache."""
        return sum(
            int(s.talker_positions.max()) + 1 for s in self._talker_users if s.talker_positions is not None
        )


def _talker_length(segment: Segment) -> int:
    return 0 if segment.talker_ids is None else int(segment.talker_ids.shape[0])


def _share_talker_parts(
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


def _to_model(value: torch.Tensor, key: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if value.is_floating_point() and key != "video_second_per_grid":
        return value.to(device, dtype)
    return value.to(device)


def _check_talker_rope_matches(thinker_config: Any, talker_config: Any) -> None:
    """The Talker's positions are computed with the Thinker's `get_rope_index` (see rope_positions)."""
    keys = ("audio_token_id", "image_token_id", "video_token_id", "vision_start_token_id",
            "audio_start_token_id", "position_id_per_seconds")  # fmt: skip
    for key in keys:
        if getattr(thinker_config, key) != getattr(talker_config, key):
            raise ValueError(
                f"thinker and talker configs disagree on {key}: cannot place the Talker's positions"
            )
    if thinker_config.vision_config.spatial_merge_size != talker_config.spatial_merge_size:
        raise ValueError("thinker and talker configs disagree on spatial_merge_size")
