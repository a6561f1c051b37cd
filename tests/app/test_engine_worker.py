"""The engine worker in its QThread: loading, streamed turns, cancel and truncate, voice and persona."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from app.engine_worker import EngineThread, EngineWorker, LoadRequest, ModelInfo
from model.media_input import UserTurn
from tests.app.helpers import FAST, SHORT_PROMPT, Collector, FakeSpeaker


@pytest.fixture
def rig(qtbot: Any, demo: Any) -> Iterator[tuple[EngineThread, Collector, FakeSpeaker]]:
    speaker = FakeSpeaker()
    worker = EngineWorker(speaker, loader=lambda source, **kw: demo)
    thread = EngineThread(worker)
    collector = Collector()
    collector.watch(worker)
    yield thread, collector, speaker
    assert thread.stop()


def load(qtbot: Any, thread: EngineThread, collector: Collector, **request: Any) -> ModelInfo:
    request = {"source": "demo", "system_prompt": SHORT_PROMPT, "engine_options": FAST, **request}
    thread.load(LoadRequest(**request))
    qtbot.waitUntil(lambda: bool(collector.of("loaded") or collector.of("load_failed")), timeout=60_000)
    assert not collector.of("load_failed"), collector.of("load_failed")
    return collector.of("loaded")[0][0]


def test_a_typed_turn_streams_text_and_audio_from_the_worker_thread(qtbot: Any, rig: Any) -> None:
    thread, collector, speaker = rig
    info = load(qtbot, thread, collector)
    assert info.is_demo and info.can_speak and info.device == "cpu"
    thread.respond(1, UserTurn(text="hello"))
    qtbot.waitUntil(lambda: bool(collector.of("turn_finished")), timeout=60_000)
    deltas = collector.of("text_delta")
    assert deltas and all(turn_id == 1 for turn_id, _ in deltas)
    assert "".join(text for _, text in deltas).strip()
    assert speaker.started == [1] and speaker.finished == [1] and speaker.chunks
    assert speaker.on_gui_thread == {False}  # audio never passes through the GUI thread
    history = thread.worker.history()
    assert [m.role for m in history] == ["user", "assistant"]
    assert thread.worker.recording.turns()[0].reply_audio().size > 0


def test_cancel_then_truncate_keeps_what_was_heard(qtbot: Any, rig: Any) -> None:
    thread, collector, speaker = rig
    load(qtbot, thread, collector, engine_options={**FAST, "max_text_tokens": 20, "max_codec_frames": 20})
    speaker.on_write = lambda chunk: thread.cancel(7)
    thread.respond(7, UserTurn(text="tell me"))
    thread.truncate(7, 1920)  # queued: runs after the turn ends
    qtbot.waitUntil(lambda: bool(collector.of("truncated")), timeout=60_000)
    stats = collector.of("turn_finished")[0][1]
    assert stats.cancelled and stats.codec_frames < 20
    reply = thread.worker.history()[-1]
    assert reply.interrupted and reply.text == collector.of("truncated")[0][1]
    streamed = "".join(text for _, text in collector.of("text_delta"))
    assert reply.text and streamed.startswith(reply.text) and len(reply.text) < len(streamed)


def test_voice_and_persona_reach_the_engine(qtbot: Any, rig: Any) -> None:
    thread, collector, _ = rig
    load(qtbot, thread, collector, speaker="aiden")
    assert thread.worker.engine.settings.speaker == "aiden"
    thread.respond(1, UserTurn(text="hi"))
    thread.configure("chelsie", SHORT_PROMPT)
    qtbot.waitUntil(lambda: bool(collector.of("configured")), timeout=60_000)
    engine = thread.worker.engine
    assert engine.settings.speaker == "chelsie" and len(engine.history) == 2  # same prompt: same talk
    thread.configure("chelsie", "You are a pirate.")
    qtbot.waitUntil(lambda: bool(len(collector.of("configured")) == 2), timeout=10_000)
    assert engine.settings.system_prompt == "You are a pirate." and engine.history == []


def test_a_cancelled_turn_that_never_started_finishes_cancelled(qtbot: Any, rig: Any) -> None:
    """Cancelled while still queued: it finishes cancelled and leaves no history. The worker is held
    in the turn before it (a turn built on the worker thread), so the cancel is surely first (CI
    once started the turn before the cancel reached it)."""
    thread, collector, _ = rig
    load(qtbot, thread, collector)
    gate = threading.Event()

    def held() -> UserTurn:
        gate.wait(30)
        return UserTurn(text="hi")

    thread.respond(2, held)
    thread.respond(3, UserTurn(text="never mind"))
    thread.cancel(2)
    thread.cancel(3)
    gate.set()
    thread.truncate(3, 0)
    qtbot.waitUntil(lambda: bool(collector.of("truncated")), timeout=60_000)
    assert [stats.cancelled for _, stats in collector.of("turn_finished")] == [True, True]
    assert collector.of("truncated") == [(3, "")] and thread.worker.history() == []


def test_load_errors_are_reported_and_the_worker_stays_usable(qtbot: Any) -> None:
    from model.loading import ModelLoadError

    def broken(source: str, **kw: Any) -> Any:
        raise ModelLoadError(f"model {source!r} is not on this computer")

    worker = EngineWorker(None, loader=broken)
    thread, collector = EngineThread(worker), Collector()
    collector.watch(worker)
    thread.load(LoadRequest(source="nowhere"))
    qtbot.waitUntil(lambda: bool(collector.of("load_failed")), timeout=10_000)
    assert "'nowhere' is not on this computer" in collector.of("load_failed")[0][0]
    thread.respond(1, UserTurn(text="hello"))
    qtbot.waitUntil(lambda: bool(collector.of("turn_failed")), timeout=10_000)
    assert "not loaded" in collector.of("turn_failed")[0][1]
    assert thread.stop()


def test_cancelling_or_quitting_during_a_load_is_clean(qtbot: Any, demo: Any) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(source: str, *, status: Any, **kw: Any) -> Any:
        status("finding the weights")
        entered.set()
        release.wait(10)
        status("loading weights")  # the first stage boundary after the cancel
        return demo

    worker = EngineWorker(None, loader=slow)
    thread, collector = EngineThread(worker), Collector()
    collector.watch(worker)
    thread.load(LoadRequest(source="slow"))
    assert entered.wait(10)
    thread.cancel_load()
    release.set()
    qtbot.waitUntil(lambda: bool(collector.of("load_cancelled")), timeout=10_000)
    assert worker.engine is None and not collector.of("loaded")
    # Quitting while a load is in progress: stop() cancels it and the thread ends.
    entered.clear()
    release.clear()
    thread.load(LoadRequest(source="slow"))
    assert entered.wait(10)
    threading.Timer(0.2, release.set).start()
    assert thread.stop(timeout_s=10)
    assert not thread.qthread.isRunning() and worker.engine is None


def test_a_turn_heard_while_spoken_is_prefilled_before_it_ends(qtbot: Any, rig: Any) -> None:
    """SpeechProgress pieces reach the worker from another thread (as from the audio thread); the
    turn's end then has only its last window left."""
    import numpy as np

    from tests.test_live_turn import quantized, speech_like

    thread, collector, _speaker = rig
    load(qtbot, thread, collector)
    audio = quantized(speech_like(18.0))
    sender = threading.Thread(
        target=lambda: [thread.listen(audio[i : i + 8000]) for i in range(0, audio.size, 8000)]
    )
    sender.start()
    sender.join()
    thread.respond(1, UserTurn(audio=audio))
    qtbot.waitUntil(
        lambda: bool(collector.of("turn_finished") or collector.of("turn_failed")), timeout=60_000
    )
    stats = collector.of("turn_finished")[0][1]
    assert 0 < stats.live_prefilled_tokens < stats.new_prompt_tokens
    # An abandoned turn leaves nothing: the next turn prefills from scratch.
    thread.listen(np.asarray(audio[:160_000]))
    thread.abandon()
    thread.respond(2, UserTurn(text="and now?"))
    qtbot.waitUntil(lambda: len(collector.of("turn_finished")) == 2, timeout=60_000)
    assert collector.of("turn_finished")[1][1].live_prefilled_tokens == 0


def test_a_notice_is_said_out_of_the_conversation_and_cut_when_cancelled(
    qtbot: Any, rig: Any, demo: Any, monkeypatch: Any
) -> None:
    """A tool's "still running" notice in process: spoken under its own turn id (-key), nothing in
    the history; cancelled, it is cut at the speaker."""
    from tests.app.helpers import FakePlayer
    from tests.tools.forcing import force_reply

    thread, collector, _ = rig
    load(qtbot, thread, collector, engine_options={**FAST, "max_text_tokens": 8, "max_codec_frames": 8})
    thread.respond(1, UserTurn(text="hello"))
    qtbot.waitUntil(lambda: bool(collector.of("turn_finished")), timeout=60_000)
    history = thread.worker.history()
    player = FakePlayer()
    thread.set_speech(player)
    force_reply(monkeypatch, demo.processor.tokenizer, "Still on it.<|im_end|>")  # random words may be none
    thread.say_notice(2, "Tell the user in a few words that you are still working on look_up.")
    qtbot.waitUntil(lambda: -2 in player.finished, timeout=60_000)
    thread.cancel_notice(2)
    qtbot.waitUntil(lambda: -2 in player.flushed, timeout=60_000)
    assert thread.worker.history() == history and len(collector.of("turn_finished")) == 1
    assert player.chunks and {c.turn_id for c in player.chunks} == {-2}
