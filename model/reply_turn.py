"""One reply after its prefill, as the loop it is: each iteration a Thinker step (the next text
token, chosen on the device and fed back), then a Talker step (the next 80 ms codec frame, once
the first text token is there), then Code2Wav on the frames that are due."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from events import AudioChunk, Event, TextDelta, ToolCallRequested
from model.code2wav_stream import Code2WavStream
from model.context import Segment
from model.device_sampling import DeviceSampler
from model.model_parts import ModelParts
from model.sampling import SamplingPlan
from model.talker_prompt import TalkerMemory, TtsSpecial, talker_prompt, trailing_embed
from model.talker_stream import TalkerStream
from model.text_stream import TextStream
from model.thinker_decode import ThinkerDecoder
from model.tool_format import CallSplitter, ParsedCall, call_token_ids

if TYPE_CHECKING:
    from model.engine import EngineSettings


@dataclass
class ReplyTurn:
    """A reply in progress: its tokens and frames so far, and the streams that make them."""

    turn_id: int
    parts: ModelParts
    settings: EngineSettings
    plan: SamplingPlan
    generator: torch.Generator
    stats: dict[str, Any]  # TurnStats fields, filled as the stages happen
    logits: torch.Tensor  # the Thinker's next-token logits
    decoder: ThinkerDecoder
    speak: bool
    assistant_embeds: torch.Tensor | None  # the assistant start as the Thinker embedded it
    context_ids: torch.Tensor  # the conversation so far, which the repetition penalty looks at
    ids: list[int] = field(default_factory=list)
    spoken: list[int] = field(default_factory=list)  # the ids outside tool calls: what the Talker reads
    calls: list[ToolCallRequested] = field(default_factory=list)
    frames: int = 0
    samples: int = 0
    text_done: bool = False
    talker_done: bool = False
    cancelled: bool = False
    codes: list[torch.Tensor] = field(default_factory=list)
    thinker_s: float = 0.0
    code2wav_s: float = 0.0

    def __post_init__(self) -> None:
        self.text = TextStream(self.parts.tokenizer)
        vocab = int(self.parts.thinker.config.text_config.vocab_size)
        self.sampler = DeviceSampler(
            self.plan.thinker, vocab, device=self.parts.device, generator=self.generator
        )
        # The repetition penalty looks at the whole conversation, as generate() does.
        penalized = self.plan.thinker.repetition_penalty != 1.0
        self.seen = self.sampler.seen_mask(self.context_ids.view(1, -1)) if penalized else None
        self.talker_done = not self.speak
        self.special = TtsSpecial.of(self.parts) if self.speak else None
        self.talker: TalkerStream | None = None
        self.code2wav: Code2WavStream | None = None
        self.pending: list[torch.Tensor] = []
        markers = call_token_ids(self.parts.tokenizer)
        decode = self.parts.tokenizer.decode
        self.splitter = CallSplitter(*markers, decode) if markers is not None else None

    @property
    def done(self) -> bool:
        return self.text_done and self.talker_done

    @property
    def talker_ready(self) -> bool:
        """Whether the Talker has its next text token (while a call streams, what is said waits)."""
        if self.talker is None:
            return bool(self.spoken) or self.text_done
        return self.text_done or len(self.spoken) > self.frames + 1

    @property
    def text_tokens(self) -> int:
        return len([t for t in self.ids if t not in self.parts.eos_ids])

    def thinker_step(self) -> Iterator[Event]:
        """Choose the next text token (the step's one read back), stream its text, and feed it."""
        chosen = self.sampler.choose(self.logits[:, -1], seen=self.seen)
        token = int(chosen)
        self.ids.append(token)
        self.stats.setdefault("first_token_s", time.perf_counter())
        if self.seen is not None:
            self.seen.scatter_(1, chosen, True)
        ended = token in self.parts.eos_ids
        if ended or len(self.ids) >= self.settings.max_text_tokens:
            self.text_done = True
        said, call = self.splitter.push(token) if self.splitter and not ended else (True, None)
        if said:
            self.spoken.append(token)
        if self.text_done and self.splitter is not None:
            call = call or self.splitter.close()
        if call is not None:
            yield self._called(call)
        if said and not ended:
            delta = self.text.push(token)
            if delta:
                self.stats.setdefault("first_text_s", time.perf_counter())
                yield TextDelta(self.turn_id, delta)
        if not self.text_done:
            start = time.perf_counter()
            self.logits = self.decoder.step(chosen)
            self.thinker_s += time.perf_counter() - start

    def talker_step(self, memory: TalkerMemory, segments: list[Segment]) -> Iterator[Event]:
        """The Talker's prefill on the first call (its prompt: the user turns of `segments` it has
        not heard, the reply's start); then one frame per call, through Code2Wav when due."""
        if self.talker is None:
            self._start_talker(memory, segments)
            return
        assert self.special is not None and self.code2wav is not None
        codes, next_code0 = self.talker.step(
            trailing_embed(self.parts, self.spoken, self.text_done, self.frames + 1, self.special)
        )
        self.frames += 1
        self.codes.append(codes)
        self.stats.setdefault("first_frame_s", time.perf_counter())
        self.pending.append(codes)
        if next_code0 is None or self.frames >= self.settings.max_codec_frames:
            self.talker_done = True
        want = self.settings.first_chunk_frames if self.samples == 0 else self.settings.chunk_frames
        if len(self.pending) >= want or self.talker_done:
            yield from self._emit_audio(final=self.talker_done)
            self.pending = []

    def _start_talker(self, memory: TalkerMemory, segments: list[Segment]) -> None:
        if not self.spoken or self.spoken[0] in self.parts.eos_ids:
            self.talker_done = True
            return
        assert self.special is not None and self.assistant_embeds is not None
        self.talker = TalkerStream(
            self.parts.talker, self.plan.talker, self.plan.code_predictor, generator=self.generator
        )
        self.code2wav = Code2WavStream(self.parts.model.code2wav)
        first = self.parts.text_embed(self.spoken[0])
        embeds, positions, new_users = talker_prompt(
            self.parts, memory, segments, self.settings.speaker, self.assistant_embeds, first, self.special
        )
        self.talker.prefill(embeds, positions, memory.cache)
        self.stats["talker_prefill_tokens"] = int(embeds.shape[1])
        memory.users.extend(new_users)
        memory.live = 0

    def _called(self, call: ParsedCall) -> ToolCallRequested:
        now = time.perf_counter()
        self.stats["call_end_s"] = now
        call_id = f"call_{uuid.uuid4().hex[:16]}"
        event = ToolCallRequested(self.turn_id, call_id, call.name, call.arguments, now)
        self.calls.append(event)
        return event

    def _emit_audio(self, final: bool) -> Iterator[Event]:
        assert self.code2wav is not None
        start = time.perf_counter()
        pcm = self.code2wav.push(torch.stack(self.pending, dim=1))
        if final:
            pcm = np.concatenate([pcm, self.code2wav.flush()])
        self.code2wav_s += time.perf_counter() - start
        if pcm.size == 0:
            return
        first_frame = self.samples // self.parts.samples_per_frame
        self.samples += int(pcm.size)
        self.stats.setdefault("first_audio_s", time.perf_counter())
        rate = output_rate_hz(self.parts)
        yield AudioChunk(self.turn_id, pcm.astype(np.float32, copy=False), rate, first_frame)

    def finish_stats(self) -> dict[str, Any]:
        """The reply's counts and forward-pass times, for TurnStats."""
        return {
            "finished_s": time.perf_counter(),
            "text_tokens": self.text_tokens,
            "codec_frames": self.frames,
            "audio_samples": self.samples,
            "cancelled": self.cancelled,
            "tool_calls": len(self.calls),
            "thinker_forward_s": self.thinker_s,
            "talker_forward_s": self.talker.forward_s if self.talker else 0.0,
            "code2wav_forward_s": self.code2wav_s,
        }


def output_rate_hz(parts: ModelParts) -> int:
    return int(getattr(parts.model.config, "output_sample_rate", 24_000))
