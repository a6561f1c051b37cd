"""A reply cut while its calls wait: the calls stay whole in the model's context (for the result
that answers them), and only what was heard of the words before them."""

from __future__ import annotations

from typing import Any

from events import Problem, ToolCallRequested, ToolConfirmationNeeded, TurnFinished
from model.media_input import UserTurn
from model.tool_format import ToolSpec, call_token_ids
from tests.engine_helpers import greedy_engine, run
from tests.tools.forcing import force_reply

NOTE = ToolSpec("write_note", "Write a note.", {"type": "object", "properties": {"text": {"type": "string"}}})
CALL = '<tool_call>\n{"name": "write_note", "arguments": {"text": "milk"}}\n</tool_call><|im_end|>'


def test_a_cut_keeps_the_words_heard_and_the_call_whole(demo, monkeypatch) -> None:
    engine = greedy_engine(demo, tools=(NOTE,), max_text_tokens=200, max_codec_frames=40)
    tokenizer = engine.tokenizer
    said = "Sure, I will write that down now.\n"
    (reply,) = force_reply(monkeypatch, tokenizer, said + CALL)
    events = run(engine, UserTurn(text="note milk"), 1)
    assert [e.name for e in events if isinstance(e, ToolCallRequested)] == ["write_note"]
    start = engine.context.length - len(reply) + 1  # the reply's last token waits, unfed

    kept = engine.truncate_last_reply(3 * engine.parts.samples_per_frame)  # three frames heard
    words = list(tokenizer(said, add_special_tokens=False)["input_ids"])
    assert kept == tokenizer.decode(words[:3])  # what the user heard, and no call text
    markers = call_token_ids(tokenizer)
    assert markers is not None
    call = reply[reply.index(markers[0]) : reply.index(markers[1]) + 1]
    in_context = engine.context.all_ids()[start:].tolist() + engine.conversation.unfed
    assert in_context == words[:3] + call  # the call whole after the words heard

    run(engine, UserTurn(text="and eggs"), 2)
    text = tokenizer.decode(engine.context.all_ids())
    assert "</tool_call><|im_end|>\n<|im_start|>user\nand eggs" in text  # closed as a reply is


def test_over_the_protocol_a_call_cut_while_it_waits_is_answered_as_cancelled(
    qtbot: Any, demo: Any, monkeypatch: Any
) -> None:
    from app.engine_client import LoadRequest
    from app.realtime_client import RealtimeEngine
    from app.session import Session
    from app.tool_catalog import Tool, ToolOutput
    from app.tool_config import ToolSettings
    from app.tool_flow import TOLD_ASKING, ToolFlow
    from tests.app.helpers import SHORT_PROMPT, FakePlayer
    from tests.realtime.inproc import greedy_host, server_thread

    host = greedy_host(demo)
    seen: list[object] = []
    with server_thread(host) as (url, state):
        client = RealtimeEngine(FakePlayer(), url=url)
        flow = ToolFlow(client, ToolSettings(), builtins=[Tool(NOTE, run=lambda _: ToolOutput("noted"))])
        session = Session(client, tools=flow)
        session.reported.connect(seen.append)
        session.load(LoadRequest(source="", system_prompt=SHORT_PROMPT))
        flow.start()
        qtbot.waitUntil(lambda: session.model_info is not None, timeout=120_000)
        force_reply(monkeypatch, demo.processor.tokenizer, CALL, "Fine.<|im_end|>")
        session.send_text("note milk")
        qtbot.waitUntil(lambda: any(isinstance(e, ToolConfirmationNeeded) for e in seen), timeout=120_000)
        session.send_text("never mind")  # interrupts the turn while its call waits for a yes
        qtbot.waitUntil(lambda: sum(isinstance(e, TurnFinished) for e in seen) == 1, timeout=120_000)
        (conversation,) = state.conversations
        text = demo.processor.tokenizer.decode(conversation.engine.context.all_ids())
        flow.close()
        assert client.stop()
    assert not [e for e in seen if isinstance(e, Problem)]
    answered = f"</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n{TOLD_ASKING}\n</tool_response>"
    assert answered + "<|im_end|>\n<|im_start|>assistant\n<|im_end|>\n<|im_start|>user\nnever mind" in text
