"""The app's engine client (`RealtimeEngine`) against a real `omnidesk serve`: turns, truncation,
every event it sends checked against the protocol's models; its own engine process killed with
SIGKILL mid-conversation comes back with the conversation in its context."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.engine_client import LoadRequest
from app.personas import Persona
from app.realtime_client import RealtimeEngine
from app.session import Session
from events import Problem, TurnFinished
from model.media_input import UserTurn
from tests.app.helpers import SHORT_PROMPT, Collector, FakePlayer, FakeSpeaker, ScriptedInput
from tests.engine_helpers import tone
from tests.realtime.conformance import check
from tests.realtime.conftest import SMALL_REPLIES, Served

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def traced() -> list[tuple[str, dict[str, Any]]]:
    return []


def make_client(url: str | None, traced: list[Any]) -> tuple[RealtimeEngine, Collector, FakeSpeaker]:
    speaker = FakeSpeaker()
    client = RealtimeEngine(speaker, url=url, trace=lambda side, event: traced.append((side, event)))
    collector = Collector()
    collector.watch(client.signals)
    return client, collector, speaker


def loaded(qtbot: Any, client: RealtimeEngine, collector: Collector, request: LoadRequest) -> Any:
    client.load(request)
    qtbot.waitUntil(lambda: bool(collector.of("loaded") or collector.of("load_failed")), timeout=120_000)
    assert not collector.of("load_failed"), collector.of("load_failed")
    return collector.of("loaded")[0][0]


def finished(qtbot: Any, collector: Collector, turn_id: int) -> Any:
    qtbot.waitUntil(
        lambda: any(t == turn_id for t, _ in collector.of("turn_finished") + collector.of("turn_failed")),
        timeout=120_000,
    )
    failed = [m for t, m in collector.of("turn_failed") if t == turn_id]
    assert not failed, failed
    return next(stats for t, stats in collector.of("turn_finished") if t == turn_id)


@pytest.fixture
def remote(
    qtbot: Any, served: Served, traced: list[Any]
) -> Iterator[tuple[RealtimeEngine, Collector, FakeSpeaker]]:
    client, collector, speaker = make_client(served.url, traced)
    loaded(qtbot, client, collector, LoadRequest(source="", system_prompt=SHORT_PROMPT))
    yield client, collector, speaker
    assert client.stop()


def test_typed_and_spoken_turns_stream_text_and_audio(qtbot: Any, remote: Any, traced: list[Any]) -> None:
    client, collector, speaker = remote
    client.respond(1, UserTurn(text="hello"))
    assert finished(qtbot, collector, 1).text_tokens > 0
    audio = (tone(3.0) * 32767).astype(np.int16)
    for i in range(0, audio.size, 8000):  # the turn while it is spoken, half a second at a time
        client.listen(audio[i : i + 8000])
    client.respond(2, UserTurn(audio=audio[:40_000]))  # the turn detector may cut trailing silence
    stats = finished(qtbot, collector, 2)
    assert stats.audio_samples > 0 and speaker.started == [1, 2] and speaker.finished == [1, 2]
    assert speaker.on_gui_thread == {False}
    assert "".join(t for turn, t in collector.of("text_delta") if turn == 2).strip()
    history = client.history()
    assert [(m.role, m.turn_id) for m in history] == [
        ("user", 1),
        ("assistant", 1),
        ("user", 2),
        ("assistant", 2),
    ]
    assert history[2].audio_s == pytest.approx(2.5)
    sent = [e for side, e in traced if side == "sent"]
    assert {
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "response.create",
    } <= {e["type"] for e in sent}
    for side, event in traced:
        check(event, "client" if side == "sent" else "server")


def test_the_users_words_reach_the_app_and_its_history(qtbot: Any, remote: Any) -> None:
    """Issue 16: the server's input audio transcription becomes `UserTranscript` for the spoken turn
    (none for a typed one), and the client's history shows the words instead of "(spoken)"."""
    client, collector, _speaker = remote
    client.respond(1, UserTurn(text="hello"))
    finished(qtbot, collector, 1)
    audio = (tone(2.0) * 32767).astype(np.int16)
    client.respond(2, UserTurn(audio=audio))
    finished(qtbot, collector, 2)
    qtbot.waitUntil(lambda: bool(collector.of("transcript")), timeout=30_000)
    ((turn_id, words),) = collector.of("transcript")
    assert turn_id == 2 and words.strip()
    spoken = client.history()[2]
    assert (spoken.role, spoken.turn_id, spoken.text) == ("user", 2, words.strip())


def test_truncation_keeps_the_heard_text_on_both_sides(qtbot: Any, remote: Any) -> None:
    client, collector, _speaker = remote
    client.respond(1, UserTurn(text="tell me"))
    finished(qtbot, collector, 1)
    whole = client.history()[-1].text
    client.truncate(1, 1920)  # the first codec frame was heard
    qtbot.waitUntil(lambda: bool(collector.of("truncated")), timeout=60_000)
    turn_id, kept = collector.of("truncated")[0]
    assert turn_id == 1 and whole.startswith(kept) and len(kept) < len(whole)
    assert client.history()[-1].interrupted and client.history()[-1].text == kept


def test_killed_engine_restarts_and_remembers(qtbot: Any, demo_dir: Path, traced: list[Any]) -> None:
    client, collector, _speaker = make_client(None, traced)
    request = LoadRequest(source=str(demo_dir), system_prompt=SHORT_PROMPT, engine_options=SMALL_REPLIES)
    info = loaded(qtbot, client, collector, request)
    assert info.is_demo and info.device == "cpu"
    try:
        client.respond(1, UserTurn(text="remember the word apple"))
        first = finished(qtbot, collector, 1)
        client.respond(2, UserTurn(audio=(tone(1.5) * 32767).astype(np.int16)))
        second = finished(qtbot, collector, 2)
        assert second.prompt_tokens > first.prompt_tokens
        assert client.local is not None
        old_pid = client.local.pid
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)
        client.respond(3, UserTurn(text="which word?"))  # typed while the engine comes back
        third = finished(qtbot, collector, 3)
        assert [k for k, _ in collector.of("connection")] == ["lost", "restored"]
        assert "killed by signal 9" in collector.of("connection")[0][1]
        assert client.local.pid != old_pid
        # The new engine's context holds both earlier exchanges: what it read for this reply is the
        # conversation so far, not a fresh one (which would be about the size of the first turn).
        assert third.prompt_tokens >= second.prompt_tokens + second.text_tokens
    finally:
        assert client.stop()


def test_a_persona_whose_prompt_overflows_the_context_is_named(qtbot: Any, demo_dir: Path) -> None:
    """The engine in its own process: the error crosses the protocol with its cause, and the session
    names the persona (every turn failed with a bare token count before)."""
    persona = Persona("epic", "Epic Narrator", "You narrate. " + "Every detail matters greatly. " * 60)
    client = RealtimeEngine(FakeSpeaker())
    session = Session(client, audio_input=ScriptedInput(), playback=FakePlayer(), persona=persona)
    seen: list[object] = []
    session.reported.connect(seen.append)

    def problems() -> list[str]:
        return [e.message for e in seen if isinstance(e, Problem)]

    options = {**SMALL_REPLIES, "max_context_tokens": 200}
    session.load(
        LoadRequest(source=str(demo_dir), system_prompt=persona.system_prompt, engine_options=options)
    )
    try:
        qtbot.waitUntil(lambda: session.model_info is not None, timeout=120_000)
        session.send_text("hello")
        qtbot.waitUntil(lambda: bool(problems()), timeout=60_000)
        assert problems()[0].startswith("Persona 'Epic Narrator': the system prompt takes ")
        assert "context of 200 tokens" in problems()[0] and "Shorten its prompt" in problems()[0]
        session.set_persona(Persona("brief", "Brief", SHORT_PROMPT))
        turn_id = session.send_text("hello again")
        qtbot.waitUntil(
            lambda: any(isinstance(e, TurnFinished) and e.turn_id == turn_id for e in seen), timeout=60_000
        )
        assert len(problems()) == 1  # a short prompt fits: the next turn is answered
    finally:
        assert session.close()
