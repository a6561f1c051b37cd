"""The user's words of a spoken turn, from the model that heard them: after the reply's text, a
transcription request is appended to the Thinker's cache, decoded greedily, and cropped off again,
so the conversation the model sees is unchanged and no second model is loaded."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from model.context import Segment
from model.model_parts import ModelParts
from model.prompt import PromptFormat
from model.thinker_decode import ThinkerDecoder

# Qwen3-Omni's cookbook asks for speech recognition this way; the audio is the turn before.
TRANSCRIBE_REQUEST = "Transcribe the audio of my last message into text, in the language it was spoken."
TRANSCRIPT_TOKENS_PER_S = 8  # a bound: speech is about 3 words (4 tokens) per second
TRANSCRIPT_MIN_TOKENS = 16


@dataclass
class Transcription:
    """One transcription in progress on the Thinker's cache; `step()` until `done`, then `text`."""

    parts: ModelParts
    cache: object  # the conversation's DynamicCache, cropped back to `mark` when done
    mark: int
    max_tokens: int
    decoder: ThinkerDecoder
    logits: torch.Tensor
    ids: list[int] = field(default_factory=list)
    done: bool = False
    decode_s: float = 0.0

    def step(self) -> None:
        """One greedy token (read back: the end token stops it); crops the cache when done."""
        start = time.perf_counter()
        chosen = self.logits[:, -1].argmax(dim=-1, keepdim=True)
        token = int(chosen)
        if token in self.parts.eos_ids or len(self.ids) + 1 >= self.max_tokens:
            self.done = True
            if token not in self.parts.eos_ids:
                self.ids.append(token)
        else:
            self.ids.append(token)
            self.logits = self.decoder.step(chosen)
        if self.done:
            self.close()
        self.decode_s += time.perf_counter() - start

    def close(self) -> None:
        """Crop the cache back to where the request began (also when given up half way)."""
        self.done = True
        self.decoder.finish()
        cached = self.cache.get_seq_length()  # type: ignore[attr-defined]
        if cached > self.mark:
            self.cache.crop(self.mark - cached)  # type: ignore[attr-defined]

    @property
    def text(self) -> str:
        return self.parts.tokenizer.decode(self.ids, skip_special_tokens=True).strip()


def start_transcription(
    prompt: PromptFormat,
    segments: list[Segment],
    reply_decoder: ThinkerDecoder,
    unfed: list[int],
    audio_s: float,
) -> Transcription:
    """Append the close of the reply (its `unfed` last token) and the request after what the reply
    fed, and prefill it: the first token's logits are then ready."""
    parts = prompt.parts
    reply_decoder.finish()  # the reply's positions into the conversation's cache (static buffers)
    cache, rope_delta = reply_decoder.cache, reply_decoder.rope_delta
    mark = int(cache.get_seq_length())
    lead = prompt.lead_segments(segments, unfed)
    text = prompt.render_user([{"type": "text", "text": TRANSCRIBE_REQUEST}])
    request = parts.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    ids = torch.cat([*(s.ids for s in lead), request]).view(1, -1)
    index = torch.arange(mark, mark + ids.shape[1]).view(1, 1, -1)
    positions = torch.cat((index, (index + rope_delta).expand(3, 1, -1)))
    start = time.perf_counter()
    out = parts.thinker.model(
        input_ids=ids.to(parts.device),
        position_ids=positions.to(parts.device),
        past_key_values=cache,
        use_cache=True,
    )
    logits = parts.thinker.lm_head(out.last_hidden_state[:, -1:])
    decoder = ThinkerDecoder(parts.thinker, cache, rope_delta)
    limit = max(TRANSCRIPT_MIN_TOKENS, int(audio_s * TRANSCRIPT_TOKENS_PER_S))
    job = Transcription(parts, cache, mark, limit, decoder, logits)
    job.decode_s = time.perf_counter() - start
    return job
