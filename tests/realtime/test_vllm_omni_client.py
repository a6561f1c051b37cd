"""The app's vLLM-Omni client: against a stand-in that answers with vLLM-Omni 0.30.0's wire shapes
(see `vllm_omni_fake.py` for the files they come from), and against a real vLLM-Omni server when
OMNIDESK_TEST_VLLM_OMNI_URL names one (it needs a GPU; none here)."""

from __future__ import annotations

import base64
import io
import os
import wave
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from app.engine_client import LoadRequest
from app.vllm_omni_client import VllmOmniEngine
from model.media_input import UserTurn
from tests.app.helpers import SHORT_PROMPT, Collector, FakeSpeaker
from tests.engine_helpers import picture, tone
from tests.realtime.vllm_omni_fake import FakeVllmOmni

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def fake() -> Iterator[FakeVllmOmni]:
    server = FakeVllmOmni(api_key="k")
    yield server
    server.stop()


def connect(
    qtbot: Any, url: str, key: str | None, speak: bool = True
) -> tuple[VllmOmniEngine, Collector, FakeSpeaker]:
    speaker = FakeSpeaker()
    client = VllmOmniEngine(speaker, url=url, api_key=key)
    collector = Collector()
    collector.watch(client.signals)
    client.load(LoadRequest(source="", speaker="chelsie", system_prompt=SHORT_PROMPT, speak=speak))
    qtbot.waitUntil(lambda: bool(collector.of("loaded") or collector.of("load_failed")), timeout=60_000)
    return client, collector, speaker


def done(qtbot: Any, collector: Collector, turn_id: int) -> None:
    qtbot.waitUntil(
        lambda: any(t == turn_id for t, *_ in collector.of("turn_finished") + collector.of("turn_failed")),
        timeout=60_000,
    )


def test_turns_carry_voice_prompt_history_and_truncation(qtbot: Any, fake: FakeVllmOmni) -> None:
    client, collector, speaker = connect(qtbot, fake.start(), "k")
    assert not collector.of("load_failed")
    try:
        client.respond(1, UserTurn(text="hello", images=(picture(),)))
        done(qtbot, collector, 1)
        assert "".join(t for _, t in collector.of("text_delta")).split() == list(fake.reply_words)
        assert sum(c.pcm.size for c in speaker.chunks) == 4 * 3840 and speaker.finished == [1]
        first = fake.requests[0]
        assert first["voice"] == "chelsie" and first["audio"] == {"format": "pcm16"} and first["stream"]
        assert first["modalities"] == ["text", "audio"]
        assert first["messages"][0] == {"role": "system", "content": SHORT_PROMPT}
        assert first["messages"][1]["content"][0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
        spoken = (tone(1.0) * 32767).astype(np.int16)
        client.respond(2, UserTurn(audio=spoken))
        done(qtbot, collector, 2)
        second = fake.requests[1]["messages"]
        assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
        assert second[2]["content"].split() == list(fake.reply_words)  # the first reply, as it was heard
        wav = base64.b64decode(second[3]["content"][0]["input_audio"]["data"])
        with wave.open(io.BytesIO(wav)) as audio:
            assert audio.getframerate() == 16_000 and audio.getnframes() == spoken.size
        client.truncate(2, 3840 * 2)  # half of the reply's audio was heard
        qtbot.waitUntil(lambda: bool(collector.of("truncated")), timeout=10_000)
        kept = collector.of("truncated")[0][1]
        assert kept and "Sure," in kept and "answer." not in kept
        client.respond(3, UserTurn(text="and?"))
        done(qtbot, collector, 3)
        assert fake.requests[2]["messages"][4] == {"role": "assistant", "content": kept}
    finally:
        client.stop()


def test_cancel_closes_the_stream_and_errors_reach_the_window(qtbot: Any, fake: FakeVllmOmni) -> None:
    fake.chunk_delay_s, fake.audio_chunks = 0.2, 40
    client, collector, speaker = connect(qtbot, fake.start(), "k")
    try:
        speaker.on_write = lambda chunk: client.cancel(1)
        client.respond(1, UserTurn(text="talk"))
        done(qtbot, collector, 1)
        stats = collector.of("turn_finished")[0][1]
        assert stats.cancelled and stats.audio_samples < 40 * 3840
        qtbot.waitUntil(lambda: fake.aborted == 1, timeout=20_000)  # the server saw the stream closed
        fake.fail_with, fake.chunk_delay_s = "The engine is overloaded", 0.0
        client.respond(2, UserTurn(text="again"))
        done(qtbot, collector, 2)
        assert "The engine is overloaded" in collector.of("turn_failed")[0][1]
        assert [m.turn_id for m in client.history()] == [1, 1]  # the failed turn left no trace
    finally:
        client.stop()


def test_a_wrong_key_or_no_server_says_which_and_why(qtbot: Any, fake: FakeVllmOmni) -> None:
    url = fake.start()
    client, collector, _ = connect(qtbot, url, "wrong")
    message = collector.of("load_failed")[0][0]
    client.stop()
    assert url in message and "401" in message
    fake.stop()
    client, collector, _ = connect(qtbot, url, "k")
    assert "ConnectError" in collector.of("load_failed")[0][0]
    client.stop()


@pytest.mark.skipif(
    not os.environ.get("OMNIDESK_TEST_VLLM_OMNI_URL"),
    reason="no vLLM-Omni server: set OMNIDESK_TEST_VLLM_OMNI_URL (e.g. http://gpu-box:8000/v1)",
)
def test_a_real_vllm_omni_server(qtbot: Any) -> None:
    url = os.environ["OMNIDESK_TEST_VLLM_OMNI_URL"]
    client, collector, speaker = connect(qtbot, url, os.environ.get("OMNIDESK_API_KEY"))
    assert not collector.of("load_failed"), collector.of("load_failed")
    try:
        client.respond(1, UserTurn(text="Say hello in five words."))
        done(qtbot, collector, 1)
        assert not collector.of("turn_failed"), collector.of("turn_failed")
        assert "".join(t for _, t in collector.of("text_delta")).strip()
        assert speaker.chunks and max(float(np.abs(c.pcm).max()) for c in speaker.chunks) > 0.01
    finally:
        client.stop()


def test_a_tool_call_goes_back_as_tool_messages_and_the_reply_goes_on(qtbot: Any, fake: FakeVllmOmni) -> None:
    from app.session import Session
    from app.tool_catalog import Tool, ToolOutput
    from app.tool_config import ToolSettings
    from app.tool_flow import ToolFlow
    from events import ToolCallFinished, TurnFinished
    from model.tool_format import ToolSpec

    fake.tool_call = ("add", '{"a": 20, "b": 22}')
    client = VllmOmniEngine(FakeSpeaker(), url=fake.start(), api_key="k")
    adder = Tool(ToolSpec("add", "Add.", read_only=True), run=lambda a: ToolOutput(str(a["a"] + a["b"])))
    flow = ToolFlow(client, ToolSettings(), builtins=[adder])
    session = Session(client, tools=flow)
    seen: list[object] = []
    session.reported.connect(seen.append)
    session.load(LoadRequest(source="", system_prompt=SHORT_PROMPT))
    flow.start()
    qtbot.waitUntil(lambda: session.model_info is not None, timeout=60_000)
    try:
        turn_id = session.send_text("twenty and twenty-two?")
        qtbot.waitUntil(lambda: any(isinstance(e, TurnFinished) for e in seen), timeout=60_000)
        first, second = fake.requests
        assert first["tools"] == [{"type": "function", "function": {"name": "add", "description": "Add.",
                                   "parameters": {"type": "object", "properties": {}}}}]  # fmt: skip
        called, told = second["messages"][-2:]
        assert called["tool_calls"] == [
            {
                "id": "chatcmpl-tool-1",
                "type": "function",
                "function": {"name": "add", "arguments": '{"a": 20, "b": 22}'},
            }
        ]
        assert told == {"role": "tool", "tool_call_id": "chatcmpl-tool-1", "content": "42"}
        (result,) = [e for e in seen if isinstance(e, ToolCallFinished)]
        assert result.ok and result.turn_id == turn_id
        assert client.history()[-1].text.split() == list(fake.reply_words)  # the same turn went on
    finally:
        flow.close()
        client.stop()
