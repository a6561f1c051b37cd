"""While a tool runs longer than a moment, the assistant says so (`[tools] while_running = "voice"`)
or only the window shows it ("window"): the app, the Realtime client and server, and the speaker
on a PulseAudio null sink; what the speaker played is recorded from its monitor."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.config import Config, load
from app.engine_client import LoadRequest
from app.realtime_client import RealtimeEngine
from app.session import Session
from app.speaker_turns import SpeakerTurns
from app.tool_catalog import Tool, ToolOutput
from app.tool_config import ToolSettings
from app.tool_flow import ToolFlow
from audio_io.chain import make_player
from bench.rig.pulse import SPEAKER, SPEAKER_MONITOR, Recorder
from events import TextDelta, ToolCallFinished, TurnFinished
from model.tool_format import ToolSpec
from tests.app.helpers import SHORT_PROMPT
from tests.realtime.inproc import greedy_host, server_thread
from tests.tools.forcing import force_reply

pytestmark = pytest.mark.timeout(300)

HEARD = 1e-3
LOOKUP = ToolSpec("look_up", "Look something up.", {"type": "object", "properties": {}}, read_only=True)
CALL = '<tool_call>\n{"name": "look_up", "arguments": {}}\n</tool_call><|im_end|>'  # no words before it
WORDS_AND_CALL = "Let me look that up for you." + CALL
NOTICE = "Still looking, one moment.<|im_end|>"
AFTER = "Found it, here it is.<|im_end|>"
HANG_S = 3.0  # how long the tool hangs when nothing lets it go (under its time limit)


def loud(recorder: Recorder, start: int, end: int | None = None) -> float:
    samples = recorder.samples()[start:end]
    return float(np.abs(samples).max(initial=0.0))


def notice_done(traced: list[tuple[str, dict[str, Any]]]) -> bool:
    return any(
        side == "received"
        and e["type"] == "response.done"
        and "omnidesk_notice" in (e["response"]["metadata"] or {})
        for side, e in traced
    )


def run_turn(qtbot: Any, demo: Any, monkeypatch: Any, mode: str) -> dict[str, Any]:
    """One typed turn whose reply calls a tool that hangs: what the speaker played while it ran and
    after, what the client sent and what the session reported."""
    host = greedy_host(demo, max_text_tokens=80, max_codec_frames=12)
    traced: list[tuple[str, dict[str, Any]]] = []
    seen: list[object] = []
    release = threading.Event()
    span: dict[str, float] = {}

    def look_up(_arguments: dict[str, Any]) -> ToolOutput:
        span["start_s"] = time.perf_counter()
        release.wait(HANG_S if mode == "window" else 60.0)
        span["end_s"] = time.perf_counter()
        return ToolOutput("forty-two")

    metered = make_player(SPEAKER)
    written: list[tuple[int, bool]] = []  # (player turn id, taken) of each chunk

    def write(chunk: Any, original: Any = metered.write) -> bool:
        taken = bool(original(chunk))
        written.append((chunk.turn_id, taken))
        return taken

    monkeypatch.setattr(metered, "write", write)
    speaker = SpeakerTurns(metered)
    speaker.start()
    recorder = Recorder(SPEAKER_MONITOR)
    try:
        with server_thread(host) as (url, state):
            client = RealtimeEngine(speaker, url=url, trace=lambda side, event: traced.append((side, event)))
            flow = ToolFlow(client, ToolSettings(while_running=mode), builtins=[Tool(LOOKUP, run=look_up)])
            session = Session(client, playback=speaker, tools=flow)
            session.reported.connect(seen.append)
            session.load(LoadRequest(source="", system_prompt=SHORT_PROMPT))
            flow.start()
            qtbot.waitUntil(lambda: session.model_info is not None, timeout=120_000)
            replies = (WORDS_AND_CALL, NOTICE, AFTER) if mode == "voice" else (CALL, AFTER)
            force_reply(monkeypatch, demo.processor.tokenizer, *replies)
            begin = len(recorder.samples())
            session.send_text("look it up")
            qtbot.waitUntil(lambda: "start_s" in span, timeout=120_000)
            if mode == "voice":  # the tool is let go once the notice was heard and all of it sent
                qtbot.waitUntil(lambda: loud(recorder, begin) > HEARD, timeout=120_000)
                qtbot.waitUntil(lambda: notice_done(traced), timeout=120_000)
                release.set()  # (its words are forced: a notice cut short would leave some to the reply)
            qtbot.waitUntil(lambda: any(isinstance(e, TurnFinished) for e in seen), timeout=120_000)
            qtbot.waitUntil(lambda: speaker.speaking_turn() is None, timeout=60_000)
            qtbot.wait(300)  # the monitor's last blocks
            (conversation,) = state.conversations
            server_history = [m.text for m in conversation.engine.history]
            heard_notice = speaker.played_samples(-1)
            client_history = [m.text for m in client.history()]
            flow.close()
            assert client.stop()
    finally:
        speaker.stop()
        recorder.close()
    during = (recorder.index_at(span["start_s"]), recorder.index_at(span["end_s"]))
    return {
        "during": loud(recorder, *during),
        "after": loud(recorder, during[1]),
        "sent": [e for side, e in traced if side == "sent"],
        "seen": seen,
        "histories": server_history + client_history,
        "written": [(speaker.app_id(turn_id), taken) for turn_id, taken in written],
        "heard_notice": heard_notice,
    }


def test_a_tool_running_long_is_said_aloud_and_the_reply_goes_on(
    qtbot: Any, demo: Any, monkeypatch: Any, virtual_audio: Any
) -> None:
    turn = run_turn(qtbot, demo, monkeypatch, "voice")
    # The reply's words before its call, the notice (a turn of its own), the rest of the reply: each
    # taken by the player (the rest not dropped as a stale turn), and heard at the speaker.
    runs = [
        turn_id
        for i, (turn_id, _) in enumerate(turn["written"])
        if i == 0 or turn["written"][i - 1][0] != turn_id
    ]
    assert runs == [1, -1, 1]
    assert all(taken for _, taken in turn["written"])
    assert turn["heard_notice"] > 0
    assert turn["during"] > HEARD  # at the speaker while the tool ran
    assert turn["after"] > HEARD  # and the reply's own words after it
    notices = [
        e["response"]
        for e in turn["sent"]
        if e["type"] == "response.create" and "conversation" in e.get("response", {})
    ]
    assert len(notices) == 1 and notices[0]["output_modalities"] == ["audio"] and notices[0]["input"] == []
    assert "look_up" in notices[0]["instructions"]
    seen = turn["seen"]
    (finished,) = [e for e in seen if isinstance(e, ToolCallFinished)]
    assert finished.ok
    said = "".join(e.text for e in seen if isinstance(e, TextDelta))
    assert said == "Let me look that up for you.Found it, here it is."  # the notice is no reply text
    assert not any("Still looking" in text for text in turn["histories"])  # nor in any history


def test_with_the_window_setting_nothing_is_said_while_the_tool_runs(
    qtbot: Any, demo: Any, monkeypatch: Any, virtual_audio: Any
) -> None:
    turn = run_turn(qtbot, demo, monkeypatch, "window")
    assert turn["during"] <= HEARD
    assert turn["after"] > HEARD
    assert not [
        e for e in turn["sent"] if e["type"] == "response.create" and "conversation" in e.get("response", {})
    ]


def test_a_bad_while_running_value_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[tools]\ntimeout_s = 10.0\nwhile_running = "loud"\n', encoding="utf-8")
    loaded = load(path)
    assert loaded.config == Config() and loaded.error is not None  # the defaults, and why
    assert loaded.error.line == 3
    assert loaded.error.problem == "tools.while_running must be one of 'voice', 'window', not 'loud'"
    path.write_text('[tools]\nwhile_running = "window"\n', encoding="utf-8")
    assert load(path).config.tools.while_running == "window"
    assert Config().tools.while_running == "voice"


def test_the_speaker_maps_a_notice_between_a_replys_parts(virtual_audio: Any) -> None:
    """The player takes turn ids in rising order only: through SpeakerTurns a notice plays inside a
    reply's turn and the reply goes on after it; a barge-in on the notice is the notice's (which the
    session, knowing no such turn, leaves alone), one on the rest of the reply is the reply's, with
    all that was heard of it."""
    from events import AudioChunk, BargeIn

    def tone(turn_id: int, first_frame: int, seconds: float = 0.3) -> AudioChunk:
        pcm = (0.1 * np.sin(np.arange(int(24_000 * seconds)) * 0.05)).astype(np.float32)
        return AudioChunk(turn_id, pcm, 24_000, first_frame)

    speaker = SpeakerTurns(make_player(SPEAKER))
    speaker.start()
    try:
        assert speaker.write(tone(1, 0))  # the reply's words before its call
        speaker.finish_turn(1)
        assert speaker.write(tone(-1, 0, 2.0))  # waits until they have played out
        speaker.finish_turn(-1)
        assert speaker.speaking_turn() == -1
        playing = speaker.inner.speaking_turn()
        cut = BargeIn(playing, speaker.inner.flush(playing))  # as the barge-in monitor does
        assert speaker.app_event(cut) == BargeIn(-1, cut.heard_samples)
        words = speaker.played_samples(1)
        assert words == 24_000 * 3 // 10
        assert speaker.write(tone(1, 4))  # the rest of the reply: taken, above the notice
        assert speaker.speaking_turn() == 1
        playing = speaker.inner.speaking_turn()
        time.sleep(0.1)
        cut = BargeIn(playing, speaker.inner.flush(playing))
        mapped = speaker.app_event(cut)
        assert isinstance(mapped, BargeIn) and mapped.turn_id == 1
        assert mapped.heard_samples == words + cut.heard_samples == speaker.played_samples(1)
        assert not speaker.write(tone(-1, 30))  # the notice's late audio is stale
        assert speaker.write(tone(2, 0))  # and the next turn plays
        assert speaker.speaking_turn() == 2
    finally:
        speaker.stop()
