"""Function calling in the engine, on the demo model: tools declared in the system turn in the
model's format, a `<tool_call>` parsed as it streams and never spoken, the result fed back as the
model expects (token by token), and the reply going on in the same turn."""

from __future__ import annotations

import json

import pytest

from events import AudioChunk, TextDelta, ToolCallRequested, TurnFinished
from model.media_input import UserTurn
from model.model_parts import ModelParts
from model.tool_format import ToolResult, ToolSpec
from tests.engine_helpers import greedy_engine, run, text_of
from tests.tools.forcing import force_reply

ADD = ToolSpec(
    "add",
    "Add two integers.",
    {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}},
    read_only=True,
)
CALL = '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call><|im_end|>'


def talker_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every text token the Talker is fed (its prompt's first and each step's), in order."""
    seen: list[int] = []
    original = ModelParts.text_embed

    def text_embed(self: ModelParts, token: int):  # type: ignore[no-untyped-def]
        seen.append(token)
        return original(self, token)

    monkeypatch.setattr(ModelParts, "text_embed", text_embed)
    return seen


def test_a_call_is_parsed_not_spoken_and_the_reply_goes_on_after_its_result(demo, monkeypatch) -> None:
    engine = greedy_engine(demo, tools=(ADD,), max_text_tokens=120, max_codec_frames=24)
    tokenizer = engine.tokenizer
    preface = "Sure.\n"
    (first, _) = force_reply(monkeypatch, tokenizer, preface + CALL, "")
    reads = talker_reads(monkeypatch)

    events = run(engine, UserTurn(text="what is two and three?"), 1)
    calls = [e for e in events if isinstance(e, ToolCallRequested)]
    assert [(c.turn_id, c.name, json.loads(c.arguments)) for c in calls] == [(1, "add", {"a": 2, "b": 3})]
    assert text_of(events) == preface  # the call's text never reaches the transcript...
    said = list(tokenizer(preface, add_special_tokens=False)["input_ids"])
    assert reads and reads == said[: len(reads)]  # ...nor the Talker: it read the preface only
    finished = events[-1]
    assert isinstance(finished, TurnFinished) and finished.stats.tool_calls == 1
    assert engine.last_reply_ids == first  # the call stays in the model's context as generated
    system = tokenizer.decode(engine.context.segments[0].ids)
    assert '<tools>\n{"type": "function", "function": {"name": "add"' in system
    assert system.index(engine.settings.system_prompt) < system.index("# Tools")

    reads.clear()
    start = engine.context.length
    result = ToolResult(calls[0].call_id, "add", "5")
    after = run(engine, UserTurn(tool_results=(result,)), 1)
    fed = engine.context.all_ids()[start : start + 64].tolist()
    expected = "\n<|im_start|>user\n<tool_response>\n5\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    want = [first[-1], *tokenizer(expected, add_special_tokens=False)["input_ids"]]
    assert fed[: len(want)] == want  # the close of the call's reply, then the result turn, token by token
    assert text_of(after) and any(isinstance(e, AudioChunk) for e in after)  # the reply goes on, spoken
    assert not any(isinstance(e, ToolCallRequested) for e in after)
    assert reads[0] == engine.last_reply_ids[0]  # the Talker speaks the continuation from its start
    assert [m.role for m in engine.history] == ["user", "assistant", "user", "assistant"]
    assert "<tool_response>\n5\n</tool_response>" in engine.history[2].text


def test_a_malformed_or_unfinished_call_comes_out_as_a_call_without_a_name(demo, monkeypatch) -> None:
    engine = greedy_engine(demo, tools=(ADD,), max_text_tokens=120)
    force_reply(monkeypatch, engine.tokenizer, "<tool_call>\n{name: add\n</tool_call><|im_end|>")
    events = run(engine, UserTurn(text="add"), 1)
    (call,) = [e for e in events if isinstance(e, ToolCallRequested)]
    assert call.name == "" and call.arguments == "{name: add"
    assert not [e for e in events if isinstance(e, TextDelta)]

    force_reply(monkeypatch, engine.tokenizer, '<tool_call>\n{"name": "add", "argu<|im_end|>')
    events = run(engine, UserTurn(text="again"), 2)
    (call,) = [e for e in events if isinstance(e, ToolCallRequested)]
    assert call.name == "" and call.arguments == '{"name": "add", "argu'


def test_tools_declared_mid_conversation_rewrite_the_system_turn(demo) -> None:
    engine = greedy_engine(demo)
    run(engine, UserTurn(text="hello"), 1)
    turns = len(engine.context.segments)
    engine.configure(tools=(ADD,))
    assert len(engine.context.segments) == turns
    assert engine.context.cache.get_seq_length() == engine.context.length
    assert "<tools>" in engine.tokenizer.decode(engine.context.segments[0].ids)
    assert [m.role for m in engine.history] == ["user", "assistant"]
    run(engine, UserTurn(text="and now?"), 2)
