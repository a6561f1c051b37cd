"""The streaming engine: one conversation with Qwen3-Omni, replies streamed as events.

`Engine.respond()` is a generator of events in the order things happen: `TextDelta` as the Thinker
decodes, `AudioChunk` as the Talker's frames pass through Code2Wav, then `TurnFinished` (or
`EngineError`). The Thinker's KV cache lives across turns; a cancelled reply can be cut back to
what the user heard. Everything here runs in the engine's worker thread; nothing knows of Qt.

The parts: `prompt.py` writes turns, `thinker_prefill.py` feeds them, `live_prefill.py` feeds a turn
while it is spoken, `reply_turn.py` is one reply's loop, `talker_prompt.py` what the Talker hears,
`conversation_state.py` what one conversation holds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from events import PROMPT_TOO_LONG, EngineError, Event, Message, TurnFinished, TurnStats, UserTranscript
from facts import VOICE_CHAT_PROMPT
from model import live_prefill, thinker_prefill
from model.context import Segment, ThinkerContext
from model.conversation_state import ConversationState, LastReply
from model.media_input import VIDEO_MAX_PIXELS, InputError, UserTurn
from model.model_parts import ModelParts
from model.prompt import PromptFormat
from model.reply_turn import ReplyTurn, output_rate_hz
from model.sampling import SamplingPlan
from model.thinker_decode import ThinkerDecoder
from model.tool_format import (
    ToolSpec,
    call_token_ids,
    kept_of_cut_reply,
    system_prompt_with_tools,
    tool_response_text,
)
from model.transcription import Transcription, start_transcription

log = logging.getLogger(__name__)


class PromptTooLong(InputError):
    """The turn would fit, but not after the system prompt."""


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
    tools: tuple[ToolSpec, ...] = ()  # functions the model may call (declared in the system turn)
    transcribe: bool = True  # the user's words of a spoken turn (`UserTranscript`), after the reply's text


class Engine:
    """One conversation on one loaded model. Not thread-safe: drive it from one worker thread;
    only `cancel` events may be set from other threads."""

    def __init__(self, model: Any, processor: Any, settings: EngineSettings | None = None) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.settings = settings or EngineSettings()
        self.parts = ModelParts.of(model, processor)
        self.thinker = model.thinker
        self.talker: Any = self.parts.talker
        self.device = self.thinker.device
        self.plan = self.settings.sampling or SamplingPlan.from_generation_config(model.generation_config)
        self.conversation = ConversationState()
        self.last_codes: torch.Tensor | None = None  # (16, frames) of the last reply, for tests and export
        self.last_transcribe_s: float | None = None  # the last transcription's Thinker time, for benches
        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(self.settings.seed if self.settings.seed is not None else time.time_ns())
        if self.settings.speak and self.talker is not None:
            self.parts.speaker_id(self.settings.speaker)

    # -- conversation -------------------------------------------------------------------------

    @property
    def context(self) -> ThinkerContext:
        """The Thinker's context: the segments in its KV cache, and the cache."""
        return self.conversation.context

    @context.setter
    def context(self, context: ThinkerContext) -> None:
        self.conversation.context = context

    @property
    def history(self) -> list[Message]:
        """The conversation as it was said: one `Message` per user turn and per reply."""
        return self.conversation.history

    @history.setter
    def history(self, history: list[Message]) -> None:
        self.conversation.history = history

    @property
    def can_speak(self) -> bool:
        return self.talker is not None

    @property
    def output_rate_hz(self) -> int:
        return output_rate_hz(self.parts)

    def configure(self, **changes: Any) -> None:
        """Change settings; a new system prompt starts a new conversation."""
        new = replace(self.settings, **changes)
        if new.speak and self.talker is not None:
            self.parts.speaker_id(new.speaker)
        restart = new.system_prompt != self.settings.system_prompt
        retool = new.tools != self.settings.tools
        self.settings = new
        if new.sampling is not None:
            self.plan = new.sampling
        if restart:
            self.new_conversation()
        elif retool:
            self._redeclare_tools()

    def _redeclare_tools(self) -> None:
        """New tools in the system turn of a conversation under way: its head is written again and
        the cache rebuilt (the turns stay)."""
        self.abandon_turn()
        segments = self.conversation.context.segments
        if not segments:
            return
        if segments[0].kind == "system":
            del segments[0]
        segments[:0] = self._prompt().lead_segments([], [])
        self.rebuild_cache()

    def new_conversation(self) -> None:
        self.conversation = ConversationState()

    @property
    def last_reply_ids(self) -> list[int]:
        """Token ids of the last reply as generated (its end token included), or [] before one."""
        last = self.conversation.last_reply
        return list(last.ids) if last else []

    def rebuild_cache(self) -> None:
        """Prefill the whole conversation again in one pass (after dropping media, or to check that
        the turn-by-turn cache equals a one-shot prefill)."""
        thinker_prefill.rebuild(self.parts, self.conversation)

    def remember_exchange(self, turn: UserTurn, reply: str, turn_id: int) -> None:
        """Put an earlier exchange back without generating (a client restoring its conversation into
        a new engine): the user turn, then the reply's text as if it had been said, prefilled in one
        pass; the context budget applies as for a new turn."""
        self.abandon_turn()
        if turn.is_empty:
            raise InputError("the turn is empty (no text, audio or image)")
        state = self.conversation
        ids = list(self.tokenizer(reply, add_special_tokens=False)["input_ids"])
        with torch.inference_mode():
            prompt = self._prompt()
            segments = prompt.turn_segments(turn, prompt.lead_segments(state.context.segments, state.unfed))
            if ids:
                segments.append(Segment(ids=torch.tensor(ids, dtype=torch.long), kind="reply"))
            self._fit_budget(sum(int(s.ids.shape[0]) for s in segments))
            thinker_prefill.prefill(self.parts, state, segments, need_talker=False)
        state.unfed = []
        state.last_reply = LastReply(turn_id, state.context.length - len(ids), [*ids, self.parts.im_end_id])
        state.history += [_user_message(turn, turn_id), Message("assistant", reply, turn_id)]

    def truncate_last_reply(self, heard_samples: int) -> str:
        """Keep of the last reply only what the user heard (its text up to the frames played);
        the history marks it interrupted and the KV cache is cropped to match. Returns the kept text."""
        state = self.conversation
        if state.last_reply is None or not state.history or state.history[-1].role != "assistant":
            raise ValueError("there is no reply to truncate")
        self.abandon_turn()  # a turn heard meanwhile sits after the reply in the cache
        last = state.last_reply
        heard_frames = -(-max(0, heard_samples) // self.parts.samples_per_frame)
        markers = call_token_ids(self.tokenizer)
        keep, spoken = kept_of_cut_reply(last.ids, heard_frames, markers, self.parts.eos_ids)
        same = next((i for i, (a, b) in enumerate(zip(keep, last.ids, strict=False)) if a != b), len(keep))
        state.context.crop(last.start + min(same, len(last.ids)))
        state.unfed = keep[state.context.length - last.start :]
        text = self.tokenizer.decode(spoken, skip_special_tokens=True)
        state.history[-1] = replace(state.history[-1], text=text, interrupted=True)
        state.last_reply = LastReply(last.turn_id, last.start, keep)
        return text

    # -- a turn heard while it is spoken -------------------------------------------------------

    def listen(self, audio: Any, frames: Sequence[Any] = (), fps: float | None = None) -> int:
        """Feed the turn being spoken: more 16 kHz mono audio, and camera frames at `fps` counted from
        the start of the audio. Every encoder window that became final is prefilled now, so that
        `respond()` at the end of the turn has only the last part left. Returns windows prefilled."""
        speak = self.settings.speak
        return live_prefill.listen(self._prompt(), self.conversation, audio, frames, fps, speak)

    def abandon_turn(self) -> None:
        """Forget the turn being spoken (too short, noise, a false barge-in): the cache goes back to
        where the turn began and nothing of it stays."""
        live_prefill.abandon(self.conversation)

    def answer_aside(self, turn: UserTurn, *, in_conversation: bool, instructions: str | None = None) -> str:
        """The model's short text answer to `turn`, kept out of the conversation (the Realtime
        protocol's out-of-band response, model/aside.py): heard after the conversation, or alone
        after `instructions` (None: this conversation's system turn; "": none)."""
        from model.aside import answer_aside

        prompt = self._prompt()
        if instructions is not None:
            prompt = PromptFormat(self.parts, instructions, self.settings.video_max_pixels)
        budget = self.settings.max_context_tokens
        return answer_aside(
            prompt, self.conversation, turn, in_conversation=in_conversation, budget_tokens=budget
        )

    def say_aside(self, request: str, turn_id: int, cancel: threading.Event | None = None) -> Iterator[Event]:
        """Say a short answer to `request` in the persona's voice, kept out of the conversation (an
        out-of-band response with audio, model/spoken_aside.py): its events, as `respond` streams them."""
        from model.spoken_aside import say_aside

        return say_aside(self, request, turn_id, cancel or threading.Event())

    # -- one turn -------------------------------------------------------------------------------

    def respond(self, turn: UserTurn, turn_id: int, cancel: threading.Event | None = None) -> Iterator[Event]:
        """Stream the reply to `turn`. Any failure ends the turn with `EngineError` and leaves the
        conversation as it was before the turn."""
        saved = self.conversation.snapshot()
        stats: dict[str, Any] = {"started_s": time.perf_counter()}
        try:
            with torch.inference_mode():
                yield from self._respond(turn, turn_id, cancel or threading.Event(), stats)
        except PromptTooLong as error:
            self._restore(saved)
            yield EngineError(turn_id, str(error), PROMPT_TOO_LONG)
        except InputError as error:
            self._restore(saved)
            yield EngineError(turn_id, f"cannot use this turn: {error}")
        except Exception as error:
            log.exception("turn %s failed", turn_id)
            self._restore(saved)
            yield EngineError(turn_id, f"the model failed on this turn: {type(error).__name__}: {error}")

    def _restore(self, saved: ConversationState) -> None:
        if not self.conversation.restore(saved):  # the budget rebuilt the cache during the failed turn
            self.rebuild_cache()

    def _respond(
        self, turn: UserTurn, turn_id: int, cancel: threading.Event, stats: dict[str, Any]
    ) -> Iterator[Event]:
        """Prefill the turn, then loop: Thinker step, Talker step (Code2Wav inside it) until both are done."""
        reply = self._prefill_turn(turn, turn_id, stats)
        state = self.conversation
        spoken = self.settings.transcribe and turn.audio is not None
        job: Transcription | None = None
        while not reply.done:
            if cancel.is_set():
                reply.cancelled = True
                break
            if not reply.text_done:
                yield from reply.thinker_step()
            if not reply.talker_done and reply.talker_ready:
                yield from reply.talker_step(state.talker, state.context.segments)
            # The Thinker is idle once the text is complete: a transcription step after each Talker
            # step, from the reply's first audio on (so that never waits for it).
            if spoken and reply.text_done and (reply.samples or reply.talker_done):
                job = job or self._transcribe(reply, turn)
                yield from _transcript_step(job, turn_id)
        if spoken and reply.text_done and not reply.cancelled:
            job = job or self._transcribe(reply, turn)
            while not job.done and not cancel.is_set():
                yield from _transcript_step(job, turn_id)
        if job is not None:
            job.close()  # given up half way by a cancel: the cache goes back all the same
            self.last_transcribe_s = job.decode_s
        reply.decoder.finish()
        self._finish_reply(reply)
        stats.update(reply.finish_stats())
        yield TurnFinished(turn_id, TurnStats(**stats))

    def _transcribe(self, reply: ReplyTurn, turn: UserTurn) -> Transcription:
        """Start transcribing `turn` on the cache after the reply's text (its last token not fed)."""
        audio_s = len(np.asarray(turn.audio)) / turn.audio_rate_hz
        segments = self.conversation.context.segments
        return start_transcription(self._prompt(), segments, reply.decoder, reply.ids[-1:], audio_s)

    def _prefill_turn(self, turn: UserTurn, turn_id: int, stats: dict[str, Any]) -> ReplyTurn:
        """Feed the turn's new tokens (what a live turn left), record the user's message, and set
        up the reply on the cache."""
        if turn.is_empty:
            raise InputError("the turn is empty (no text, audio or image)")
        state, prompt = self.conversation, self._prompt()
        if state.live is not None:
            new, done = live_prefill.live_segments(prompt, state, turn)
        else:
            new, done = (
                prompt.turn_segments(turn, prompt.lead_segments(state.context.segments, state.unfed)),
                None,
            )
        new_tokens = sum(int(s.ids.shape[0]) for s in new)
        if self._fit_budget(new_tokens):
            done = None  # the cache was rebuilt without the live windows
        stats["live_prefilled_tokens"] = done.tokens if done else 0
        speak = self.settings.speak and self.talker is not None
        stats["prompt_tokens"] = state.context.length + new_tokens
        stats["new_prompt_tokens"] = new_tokens
        prefill_start = time.perf_counter()
        logits, assistant_embeds = thinker_prefill.prefill(
            self.parts, state, new, need_talker=speak, done=done
        )
        state.unfed = []
        stats["prefill_done_s"] = time.perf_counter()
        state.history.append(_user_message(turn, turn_id))
        return ReplyTurn(
            turn_id=turn_id,
            parts=self.parts,
            settings=self.settings,
            plan=self.plan,
            generator=self._generator,
            stats=stats,
            logits=logits,
            decoder=ThinkerDecoder(self.thinker, state.context.cache, state.rope_delta),
            speak=speak,
            assistant_embeds=assistant_embeds,
            context_ids=state.context.all_ids(),
            thinker_s=stats["prefill_done_s"] - prefill_start,
        )

    def _finish_reply(self, reply: ReplyTurn) -> None:
        """Record the reply: its fed tokens stay in the cache, the last one waits for the next turn."""
        state = self.conversation
        start = state.context.length
        fed = reply.ids[:-1] if reply.text_done else reply.ids
        if fed:
            state.context.segments.append(Segment(ids=torch.tensor(fed, dtype=torch.long), kind="reply"))
        state.unfed = reply.ids[len(fed) :]
        state.last_reply = LastReply(reply.turn_id, start, list(reply.ids))
        self.last_codes = torch.stack(reply.codes, dim=1) if reply.codes else None
        state.history.append(
            Message("assistant", reply.text.text, reply.turn_id, interrupted=reply.cancelled)
        )

    def _prompt(self) -> PromptFormat:
        system = system_prompt_with_tools(self.settings.system_prompt, self.settings.tools)
        return PromptFormat(self.parts, system, self.settings.video_max_pixels)

    def _fit_budget(self, incoming: int) -> bool:
        budget, reply_tokens = self.settings.max_context_tokens, self.settings.max_text_tokens
        try:
            return thinker_prefill.fit_budget(self.parts, self.conversation, incoming, budget, reply_tokens)
        except InputError:
            system = sum(int(s.ids.shape[0]) for s in self._prompt().lead_segments([], []))
            turn = incoming - (0 if self.conversation.context.segments else system)
            if system and turn + reply_tokens <= budget:
                raise PromptTooLong(
                    f"the system prompt takes {system} tokens: with this turn ({turn}) and room for a "
                    f"reply ({reply_tokens}) it does not fit the model's context of {budget} tokens"
                ) from None
            raise


def _transcript_step(job: Transcription, turn_id: int) -> Iterator[Event]:
    """One decode step of the transcription; its words as soon as it is complete."""
    if not job.done:
        job.step()
        if job.done:
            yield UserTranscript(turn_id, job.text)


def _user_message(turn: UserTurn, turn_id: int) -> Message:
    """The history's record of a user turn (its text, or what it was when it had none)."""
    audio_s = 0.0 if turn.audio is None else len(np.asarray(turn.audio)) / turn.audio_rate_hz
    text = turn.text or ("(spoken)" if turn.audio is not None else "(image)")
    if turn.tool_results:
        text = tool_response_text(turn.tool_results)
    return Message("user", text, turn_id, audio_s=audio_s)
