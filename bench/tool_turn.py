"""A tool call on any model, for benches and tests: the Thinker's choices are forced to a given text
(a `<tool_call>`), so the engine's side of a call (the call parsed, the result prefilled, the reply
going on) is measured without depending on whether the model would have called."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from events import EngineError, ToolCallRequested, TurnFinished
from model.device_sampling import DeviceSampler
from model.media_input import UserTurn
from model.tool_format import ToolResult, ToolSpec

Choose = Callable[..., torch.Tensor]
CLOCK = ToolSpec("date_time", "The current local date and time.", read_only=True)
CALL = '<tool_call>\n{"name": "date_time", "arguments": {}}\n</tool_call><|im_end|>'


def forcing_choose(tokenizer: Any, texts: tuple[str, ...], original: Choose) -> Choose:
    """`DeviceSampler.choose` that picks the tokens of `texts` (each a whole reply, ending with
    `<|im_end|>`) one after another, then chooses as before. Only the Thinker's choices are forced:
    the Talker's and code predictor's vocabularies are smaller than the special tokens' ids."""
    queue = [token for text in texts for token in tokenizer(text, add_special_tokens=False)["input_ids"]]
    top = max(queue, default=0)

    def choose(self: DeviceSampler, logits: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        chosen = original(self, logits, *args, **kwargs)
        return torch.full_like(chosen, queue.pop(0)) if queue and logits.shape[-1] > top else chosen

    return choose


@contextmanager
def forced_reply(tokenizer: Any, *texts: str) -> Iterator[None]:
    original = DeviceSampler.choose
    DeviceSampler.choose = forcing_choose(tokenizer, texts, original)  # type: ignore[method-assign]
    try:
        yield
    finally:
        DeviceSampler.choose = original  # type: ignore[method-assign]


def tool_roundtrip(make_engine: Callable[..., Any], trials: int) -> dict[str, float]:
    """From the call's last token to the first token after its result, with a tool that answers at
    once (the reply's end, the result turn's prefill and one decode step), median of `trials`."""
    spans, tokens = [], 0
    for trial in range(trials):
        engine = make_engine(tools=(CLOCK,), max_text_tokens=64, max_codec_frames=8)
        with forced_reply(engine.tokenizer, CALL):
            events = list(engine.respond(UserTurn(text="What time is it?"), trial))
        calls = [e for e in events if isinstance(e, ToolCallRequested)]
        if len(calls) != 1 or not isinstance(events[-1], TurnFinished):
            raise RuntimeError(f"the forced call did not come out as one call: {events[-1]}")
        result = ToolResult(calls[0].call_id, "date_time", time.strftime("%A %H:%M"))
        start = engine.context.length
        finished = list(engine.respond(UserTurn(tool_results=(result,)), trial))[-1]
        if isinstance(finished, EngineError) or finished.stats.first_token_s is None:
            raise RuntimeError(f"the reply did not go on after the result: {finished}")
        spans.append((finished.stats.first_token_s - calls[0].called_s) * 1e3)
        tokens = finished.stats.new_prompt_tokens or engine.context.length - start
    return {"tool_roundtrip_ms": statistics.median(spans), "tool_result_prompt_tokens": float(tokens)}


NOTICE_REQUEST = "Tell the user in a few words that you are still working on date_time."
NOTICE = "Still working on it, one moment.<|im_end|>"


def spoken_notice(make_engine: Callable[..., Any], trials: int) -> dict[str, float]:
    """A tool's "still running" notice (`Engine.say_aside`, out of the conversation): from asking to
    its first audio, after a turn with a call, its words forced so that every model speaks them;
    median of `trials`."""
    from events import AudioChunk

    spans = []
    for trial in range(trials):
        engine = make_engine(tools=(CLOCK,), max_text_tokens=64, max_codec_frames=32)
        with forced_reply(engine.tokenizer, CALL, NOTICE):
            list(engine.respond(UserTurn(text="What time is it?"), trial))
            start = time.perf_counter()
            for event in engine.say_aside(NOTICE_REQUEST, -1):
                if isinstance(event, AudioChunk):
                    spans.append((time.perf_counter() - start) * 1e3)
                    break
    if len(spans) < trials:
        raise RuntimeError("a notice said nothing")
    return {"notice_first_audio_ms": statistics.median(spans)}
