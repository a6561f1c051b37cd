"""The session state machine with the real engine worker (demo model) and a recorded audio input."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from app.engine_worker import EngineThread, EngineWorker, LoadRequest
from app.personas import Persona
from app.session import Session, State
from events import BargeIn, DeviceLost, SpeechEnded, SpeechStarted
from tests.app.helpers import FAST, SHORT_PROMPT, FakePlayer, ScriptedInput, session_named

PERSONA = Persona("tester", "Tester", SHORT_PROMPT, "ethan", "Hello tester")


class Seen:
    """Everything the session told the UI, in order (its signals fire on the Qt thread)."""

    def __init__(self, session: Session) -> None:
        self.log: list[tuple[str, tuple[Any, ...]]] = []
        session.reported.connect(lambda event: self.log.append(session_named(event)))

    def of(self, name: str) -> list[tuple[Any, ...]]:
        return [args for kind, args in self.log if kind == name]

    def states(self) -> list[str]:
        return [args[0] for args in self.of("state_changed")]


@pytest.fixture
def rig(qtbot: Any, demo: Any) -> Iterator[tuple[Session, Seen, ScriptedInput, FakePlayer]]:
    player, audio = FakePlayer(), ScriptedInput()
    worker = EngineWorker(player, loader=lambda source, **kw: demo)
    session = Session(EngineThread(worker), audio_input=audio, playback=player, persona=PERSONA)
    seen = Seen(session)
    session.load(LoadRequest("demo", system_prompt=SHORT_PROMPT, engine_options=FAST))
    session.start_audio()
    qtbot.waitUntil(lambda: session.model_info is not None, timeout=60_000)
    assert session.state == State.LISTENING
    yield session, seen, audio, player
    assert session.close()


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(16_000 * seconds)) / 16_000
    return (8000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)


def test_a_typed_message_streams_a_reply_and_goes_back_to_listening(qtbot: Any, rig: Any) -> None:
    session, seen, _, player = rig
    turn_id = session.send_text("hello there")
    qtbot.waitUntil(lambda: bool(seen.of("reply_finished")), timeout=60_000)
    assert seen.of("user_turn") == [(turn_id, "hello there", 0.0)]
    assert "".join(text for _, text in seen.of("reply_text")).strip()
    assert session.state == State.SPEAKING  # its audio is still playing
    player.drain()
    qtbot.waitUntil(lambda: session.state == State.LISTENING, timeout=5_000)
    assert seen.states() == ["listening", "thinking", "assistant speaking", "listening"]
    (latency,) = seen.of("latency")[0]
    assert latency.first_text_ms > 0 and latency.first_audio_ms >= latency.first_text_ms


def test_a_spoken_turn_is_shown_with_its_duration_and_answered(qtbot: Any, rig: Any) -> None:
    session, seen, audio, _ = rig
    audio.post_from_thread(SpeechStarted(time.perf_counter()))
    qtbot.waitUntil(lambda: session.state == State.USER_SPEAKING, timeout=5_000)
    audio.post_from_thread(SpeechEnded(tone(1.5), end_s=time.perf_counter()))
    qtbot.waitUntil(lambda: bool(seen.of("reply_finished")), timeout=60_000)
    assert seen.of("user_turn") == [(1, "", 1.5)]
    assert session.engine.worker.history()[0].audio_s == 1.5


def test_speech_too_short_for_a_turn_goes_back_to_listening(qtbot: Any, rig: Any) -> None:
    _, seen, audio, _ = rig
    audio.post_from_thread(SpeechStarted(), SpeechEnded(np.zeros(0, np.int16)))
    qtbot.waitUntil(lambda: seen.states()[-2:] == ["user speaking", "listening"], timeout=5_000)
    assert not seen.of("user_turn")


def test_barge_in_stops_the_reply_and_keeps_what_was_heard(qtbot: Any, rig: Any) -> None:
    session, seen, audio, player = rig
    session.engine.worker.engine.configure(max_codec_frames=30, max_text_tokens=30)
    player.on_write = lambda chunk: audio.on_event(BargeIn(chunk.turn_id, heard_samples=1920))
    session.send_text("talk to me")
    qtbot.waitUntil(lambda: bool(seen.of("reply_interrupted")), timeout=60_000)
    turn_id, kept = seen.of("reply_interrupted")[0]
    history = session.engine.worker.history()
    assert history[-1].interrupted and history[-1].text == kept and history[-1].turn_id == turn_id
    streamed = "".join(text for _, text in seen.of("reply_text"))
    assert len(kept) < len(streamed) or not streamed
    assert "interrupted" in seen.states() and session.state == State.USER_SPEAKING
    qtbot.waitUntil(lambda: bool(session.engine.worker.history()), timeout=5_000)
    assert len(player.chunks) < 10  # generation stopped early


def test_a_reply_cut_by_a_lost_speaker_leaves_the_session_listening(qtbot: Any, rig: Any) -> None:
    """The player cuts the reply where the user stopped hearing it; nobody spoke, so the state pill
    must not say the user is speaking."""
    session, seen, audio, player = rig
    session.engine.worker.engine.configure(max_codec_frames=30, max_text_tokens=30)
    player.on_write = lambda chunk: audio.on_event(BargeIn(chunk.turn_id, 1920, device_lost=True))
    session.send_text("talk to me")
    qtbot.waitUntil(lambda: bool(seen.of("reply_interrupted")), timeout=60_000)
    assert session.engine.worker.history()[-1].interrupted
    qtbot.waitUntil(lambda: session.state == State.LISTENING, timeout=5_000)
    assert State.USER_SPEAKING.value not in seen.states()


def test_stop_speaking_flushes_playback_and_truncates(qtbot: Any, rig: Any) -> None:
    session, seen, _, player = rig
    session.engine.worker.engine.configure(max_codec_frames=30, max_text_tokens=30)
    turn_id = session.send_text("talk to me")
    qtbot.waitUntil(lambda: bool(player.chunks), timeout=60_000)
    session.stop_speaking()
    qtbot.waitUntil(lambda: player.flushed == [turn_id], timeout=5_000)
    qtbot.waitUntil(lambda: bool(seen.of("reply_interrupted")), timeout=60_000)
    assert session.engine.worker.history()[-1].interrupted
    qtbot.waitUntil(lambda: session.state == State.LISTENING, timeout=5_000)


def test_a_new_typed_message_interrupts_the_reply_in_progress(qtbot: Any, rig: Any) -> None:
    session, seen, _, player = rig
    first = session.send_text("one")
    second = session.send_text("two")
    qtbot.waitUntil(lambda: any(t == second for t, _ in seen.of("reply_finished")), timeout=60_000)
    qtbot.waitUntil(lambda: player.flushed[:1] == [first], timeout=5_000)
    roles = [(m.role, m.turn_id) for m in session.engine.worker.history()]
    assert roles[-2:] == [("user", second), ("assistant", second)]


def test_persona_and_voice_changes_reach_the_engine(qtbot: Any, rig: Any) -> None:
    session, seen, _, _ = rig
    session.set_voice("chelsie")
    qtbot.waitUntil(lambda: bool(seen.of("configured")), timeout=10_000)
    assert session.engine.worker.engine.settings.speaker == "chelsie"
    pirate = Persona("pirate", "Pirate", "You are a pirate.", "aiden", "Ahoy")
    session.set_persona(pirate)
    qtbot.waitUntil(lambda: len(seen.of("configured")) == 2, timeout=10_000)
    settings = session.engine.worker.engine.settings
    assert (
        settings.system_prompt == "You are a pirate." and settings.speaker == "chelsie"
    )  # picked voice wins
    assert seen.of("conversation_reset") == [(pirate,)]
    session.set_voice("")
    qtbot.waitUntil(lambda: len(seen.of("configured")) == 3, timeout=10_000)
    assert session.engine.worker.engine.settings.speaker == "aiden"  # the persona's own voice


def test_mute_push_to_talk_and_lost_devices(qtbot: Any, rig: Any) -> None:
    session, seen, audio, _ = rig
    session.set_muted(True)
    assert session.state == State.IDLE and ("muted", True) in audio.calls
    session.set_muted(False)
    session.set_mode("push-to-talk")
    session.press_talk()
    session.release_talk()
    assert audio.calls[-3:] == [("mode", "push-to-talk"), ("press", None), ("release", None)]
    audio.post_from_thread(DeviceLost("input", "USB Mic"))
    qtbot.waitUntil(lambda: bool(seen.of("error")), timeout=5_000)
    assert "microphone 'USB Mic'" in seen.of("error")[0][0]
