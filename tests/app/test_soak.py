"""Soak: many barge-ins in quick succession, and a long conversation, on the demo model with the real
player on a virtual loudspeaker. No deadlock (every turn resolves), no leaked thread, memory flat."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from app.engine_worker import EngineThread, EngineWorker, LoadRequest
from app.personas import Persona
from app.session import Session, State
from audio_io.chain import MeteredPlayer
from bench.rig.pulse import SPEAKER, VirtualAudio
from events import BargeIn, SpeechEnded
from tests.app.helpers import FAST, SHORT_PROMPT, ScriptedInput, on_report

pytestmark = [pytest.mark.audio, pytest.mark.slow]
PERSONA = Persona("tester", "Tester", SHORT_PROMPT, "ethan")


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Resolved:
    """Which turns reached an end the user can see: finished or interrupted."""

    def __init__(self, session: Session) -> None:
        self.finished: set[int] = set()
        self.interrupted: dict[int, str] = {}
        self.errors: list[str] = []
        on_report(session, "reply_finished", lambda t, _s: self.finished.add(t))
        on_report(session, "reply_interrupted", lambda t, text: self.interrupted.__setitem__(t, text))
        on_report(session, "error", self.errors.append)

    def done(self, turn_id: int) -> bool:
        return turn_id in self.finished or turn_id in self.interrupted


@pytest.fixture
def player(virtual_audio: VirtualAudio) -> Iterator[MeteredPlayer]:
    from audio_io.playback import Player, PlayerConfig

    metered = MeteredPlayer(Player(PlayerConfig(device=SPEAKER)))
    metered.start()
    yield metered
    metered.stop()


@pytest.fixture
def closing() -> Iterator[list[Session]]:
    """Sessions to close at the end even when the test fails (a running QThread must not be destroyed)."""
    sessions: list[Session] = []
    yield sessions
    for session in sessions:
        session.close()


def test_a_hundred_barge_ins_in_quick_succession(
    qtbot: Any, demo: Any, player: MeteredPlayer, closing: list[Session]
) -> None:
    threads_before = {t.ident for t in threading.enumerate()}
    loading = threading.Event()

    def slow_loader(source: str, **kw: Any) -> Any:
        loading.wait(30)
        return demo

    audio = ScriptedInput()
    worker = EngineWorker(player, loader=slow_loader)
    engine_thread = EngineThread(worker)
    session = Session(engine_thread, audio_input=audio, playback=player, persona=PERSONA)
    closing.append(session)
    resolved = Resolved(session)
    session.load(LoadRequest("demo", system_prompt=SHORT_PROMPT, engine_options=FAST))
    session.start_audio()

    def barge_in(turn_id: int) -> None:
        """What the barge-in monitor does on the audio thread: flush, then report what was heard."""
        heard = player.flush(turn_id)
        audio.post_from_thread(BargeIn(turn_id, heard))

    # While the model loads: every intent is safe, none starts a turn.
    for i in range(10):
        session.stop_speaking()
        session.press_talk()
        session.release_talk()
        audio.post_from_thread(BargeIn(i, 0), SpeechEnded(np.zeros(1600, np.int16)))
        assert session.send_text("too early") is None
    loading.set()
    qtbot.waitUntil(lambda: session.model_info is not None, timeout=60_000)
    armed: set[int | None] = set()

    def on_first_text(turn_id: int, _text: str) -> None:
        if turn_id in armed:
            armed.discard(turn_id)
            barge_in(turn_id)

    on_report(session, "reply_text", on_first_text)
    rss_early = 0
    for i in range(90):
        kind = i % 4
        if kind == 0:  # between the first text token (the Talker's first frame follows) and first audio
            turn_id = session.send_text(f"turn {i}")
            armed.add(turn_id)
        elif kind == 1:  # while its audio plays
            turn_id = session.send_text(f"turn {i}")
            assert turn_id is not None
            qtbot.waitUntil(
                lambda t=turn_id: session.state == State.SPEAKING or resolved.done(t), timeout=60_000
            )
            barge_in(turn_id)
        elif kind == 2:  # the stop button, at once
            turn_id = session.send_text(f"turn {i}")
            session.stop_speaking()
        else:  # a new message interrupts the one in progress
            session.send_text(f"turn {i}")
            turn_id = session.send_text(f"turn {i} again")
        assert turn_id is not None
        qtbot.waitUntil(lambda t=turn_id: resolved.done(t), timeout=60_000)  # no deadlock
        if i == 19:
            gc.collect()
            rss_early = rss_bytes()
    qtbot.waitUntil(lambda: session.state not in (State.THINKING, State.SPEAKING), timeout=60_000)
    gc.collect()
    growth_mb = (rss_bytes() - rss_early) / 2**20
    assert growth_mb < 40, f"memory grew {growth_mb:.0f} MiB over 70 barge-ins"
    assert len(resolved.interrupted) >= 60 and not [e for e in resolved.errors if "failed" in e]
    history = worker.history()
    assert all(m.role in ("user", "assistant") for m in history)
    assert session.close()
    assert engine_thread.qthread.isFinished()
    leaked = [t.name for t in threading.enumerate() if t.ident not in threads_before and t.is_alive()]
    assert leaked == []


def test_a_long_conversation_keeps_memory_bounded(
    qtbot: Any, demo: Any, player: MeteredPlayer, closing: list[Session]
) -> None:
    budget = 600
    audio = ScriptedInput()
    worker = EngineWorker(player, loader=lambda source, **kw: demo)
    session = Session(EngineThread(worker), audio_input=audio, playback=player, persona=PERSONA)
    closing.append(session)
    resolved = Resolved(session)
    options = {**FAST, "max_text_tokens": 3, "max_codec_frames": 2, "max_context_tokens": budget}
    session.load(LoadRequest("demo", system_prompt=SHORT_PROMPT, engine_options=options))
    session.start_audio()
    qtbot.waitUntil(lambda: session.model_info is not None, timeout=60_000)
    speech = (3000 * np.sin(np.arange(8000) / 8)).astype(np.int16)
    rss_early, longest = 0, 0
    for turn in range(1, 201):
        if turn % 2:
            audio.post_from_thread(SpeechEnded(speech))
            qtbot.waitUntil(lambda t=turn: t in session.replies.latency, timeout=10_000)
        else:
            session.send_text(f"message number {turn}")
        qtbot.waitUntil(lambda t=turn: resolved.done(t), timeout=60_000)
        longest = max(longest, worker.engine.context.length)
        if turn == 50:
            gc.collect()
            rss_early = rss_bytes()
    gc.collect()
    assert longest <= budget  # old turns left the context
    assert [m.turn_id for m in worker.history()][-2:] == [200, 200]
    assert (rss_bytes() - rss_early) / 2**20 < 40
    assert not resolved.errors
    assert session.close()
