"""A yes or no said aloud to a tool that acts: the engine hears the spoken answer aside (the
Realtime protocol's out-of-band response) and the conversation the model sees is unchanged."""

from __future__ import annotations

import pytest
import torch

from events import ToolCallRequested
from model.media_input import UserTurn
from model.tool_format import ToolResult, ToolSpec
from tests.engine_helpers import greedy_engine, run, tone
from tests.tools.forcing import force_reply

NOTE = ToolSpec("write_note", "Write a note.", {"type": "object", "properties": {"text": {"type": "string"}}})
CALL = '<tool_call>\n{"name": "write_note", "arguments": {"text": "milk"}}\n</tool_call><|im_end|>'
ASK = "Transcribe the audio into text."


@pytest.mark.parametrize("in_conversation", [False, True])
def test_an_answer_heard_aside_leaves_the_conversation_as_it_was(demo, monkeypatch, in_conversation) -> None:
    engine = greedy_engine(demo, tools=(NOTE,), max_text_tokens=90, max_codec_frames=8)
    tokenizer = engine.tokenizer
    force_reply(monkeypatch, tokenizer, CALL, "yes, go ahead<|im_end|>")
    events = run(engine, UserTurn(text="note milk"), 1)
    (call,) = [e for e in events if isinstance(e, ToolCallRequested)]
    ids, history = engine.context.all_ids().clone(), list(engine.history)
    cached = engine.context.cache.get_seq_length()
    engine.listen(tone(0.6))  # the answer, prefilled as it is spoken, then heard aside
    instructions = "" if not in_conversation else None
    heard = engine.answer_aside(
        UserTurn(audio=tone(0.6), text=ASK), in_conversation=in_conversation, instructions=instructions
    )
    assert heard == "yes, go ahead"
    assert torch.equal(engine.context.all_ids(), ids) and engine.history == history
    assert engine.context.cache.get_seq_length() == cached and engine.conversation.live is None

    start = engine.context.length
    run(engine, UserTurn(tool_results=(ToolResult(call.call_id, "write_note", "noted"),)), 1)
    fed = engine.context.all_ids()[start : start + 40].tolist()
    expected = (
        "\n<|im_start|>user\n<tool_response>\nnoted\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )
    want = [
        tokenizer.convert_tokens_to_ids("<|im_end|>"),
        *tokenizer(expected, add_special_tokens=False)["input_ids"],
    ]
    assert fed[: len(want)] == want  # the result follows the call, with nothing of the answer between
