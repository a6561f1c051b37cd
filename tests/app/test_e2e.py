"""End to end: the real app (`main.py --demo`) in a real window under Xvfb, on PulseAudio null sinks.

A spoken sentence goes into the virtual microphone; the conversation journal must get the user turn
and the assistant's reply, and the loudspeaker's monitor must hear the reply. Then the user barges
in on the next reply: it must be marked interrupted and the loudspeaker must fall silent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.history_log import read_history
from bench.rig.pulse import (
    MIC,
    MIC_FEED,
    SINK_RATE_HZ,
    SPEAKER,
    SPEAKER_MONITOR,
    Feeder,
    Recorder,
    VirtualAudio,
)
from bench.rig.signals import speech

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.audio, pytest.mark.slow]
SILENT = 0.01  # float32 amplitude; the demo's speech is scaled to about -20 dBFS
CUT_MARGIN_S = 0.35  # the barge-in budget (150 ms) and the monitor's stamps lagging on a loaded machine


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    read, write = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()
    yield f":{number}"
    server.terminate()
    server.wait(10)


class App:
    """The app as a child process, with its own config, data and cache folders."""

    def __init__(self, tmp: Path, demo_dir: Path, display: str) -> None:
        cache = tmp / "cache"
        shutil.copytree(demo_dir, cache / "omnidesk" / "demo-model")
        self.data = tmp / "data"
        env = dict(
            os.environ,
            DISPLAY=display,
            QT_QPA_PLATFORM="xcb",
            XDG_CACHE_HOME=str(cache),
            OMNIDESK_CONFIG_DIR=str(tmp / "config"),
            OMNIDESK_DATA_DIR=str(self.data),
        )
        self.log = tmp / "app.log"
        command = [sys.executable, "main.py", "--demo", "--input-device", MIC, "--output-device", SPEAKER]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def journal(self) -> list[dict[str, Any]]:
        return [r for p in sorted((self.data / "conversations").glob("*.jsonl")) for r in read_history(p)]

    def wait_for(self, test: Any, what: str, timeout_s: float = 120.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            records = self.journal()
            if test(records):
                return records
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        tail = self.log.read_text(errors="replace")[-12000:]
        raise AssertionError(f"no {what}; journal {self.journal()}; app log:\n{tail}")


def kinds(records: list[dict[str, Any]], kind: str, **match: Any) -> list[dict[str, Any]]:
    return [r for r in records if r["kind"] == kind and all(r.get(k) == v for k, v in match.items())]


def loud_after(recorder: Recorder, time_s: float) -> bool:
    samples = recorder.samples()
    start = max(0, recorder.index_at(time_s))
    return samples.size > start and float(np.abs(samples[start:]).max()) > SILENT


def test_talk_to_the_app_and_barge_in(
    virtual_audio: VirtualAudio, display: str, demo_dir: Path, tmp_path: Path
) -> None:
    recorder, feeder = Recorder(SPEAKER_MONITOR), Feeder(MIC_FEED)
    app = App(tmp_path, demo_dir, display)
    try:
        app.wait_for(lambda r: bool(kinds(r, "model_ready")), "model loaded")
        # A spoken turn, answered in text and in speech.
        feeder.play(speech("Hello there, what is the weather like today?", SINK_RATE_HZ), wait=True)
        records = app.wait_for(lambda r: bool(kinds(r, "assistant", turn_id=1)), "first reply")
        (user,) = kinds(records, "user", turn_id=1)
        assert user["audio_s"] > 1.0 and user["text"] == ""
        (reply,) = kinds(records, "assistant", turn_id=1)
        assert reply["text"].strip() and not reply["interrupted"]
        assert reply["first_audio_ms"] > 0
        heard = recorder.samples()[max(0, recorder.index_at(user["perf_s"])) :]
        assert loud_after(recorder, user["perf_s"]), (  # the loudspeaker played the reply
            f"monitor peak {np.abs(heard).max() if heard.size else None} "
            f"over {heard.size / SINK_RATE_HZ:.1f} s; "
            f"journal {records}; app log:\n{app.log.read_text(errors='replace')[-2000:]}"
        )
        deadline = time.monotonic() + 60
        while loud_after(recorder, time.perf_counter() - 0.5) and time.monotonic() < deadline:
            time.sleep(0.1)  # let it finish playing

        # The next reply is interrupted as soon as it is heard.
        feeder.play(speech("Tell me a long story please.", SINK_RATE_HZ), wait=True)
        records = app.wait_for(lambda r: bool(kinds(r, "user", turn_id=2)), "second user turn")
        asked_s = kinds(records, "user", turn_id=2)[0]["perf_s"]
        deadline = time.monotonic() + 60
        while not loud_after(recorder, asked_s) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert loud_after(recorder, asked_s), "the second reply was never heard"
        barge_in = feeder.play(speech("Stop, wait a moment.", SINK_RATE_HZ), wait=True)
        records = app.wait_for(lambda r: bool(kinds(r, "assistant", turn_id=2)), "interrupted reply")
        (cut,) = kinds(records, "assistant", turn_id=2)
        assert cut["interrupted"]
        # Playback stopped: after the cut the loudspeaker is silent until the next reply (turn 3).
        cut_s = cut["perf_s"]
        records = app.wait_for(lambda r: bool(kinds(r, "user", turn_id=3)), "the barge-in as a turn")
        # The next reply cannot sound before its turn was sent (a reply computed at the user's pause
        # plays as soon as the turn is committed); the turn can follow the cut by under half a second.
        next_audio_s = kinds(records, "user", turn_id=3)[0]["perf_s"]
        time.sleep(max(0.0, next_audio_s - time.perf_counter()) + 0.3)
        samples = recorder.samples()
        # The margin covers the monitor's stamps, which lag when a loaded machine delays callbacks.
        start, end = recorder.index_at(cut_s + CUT_MARGIN_S), recorder.index_at(next_audio_s)
        assert barge_in and end > start, f"no quiet span between the cut and the next turn: {records}"
        quiet = np.abs(samples[start:end])
        loud_at = [
            round(recorder.time_of(start + int(i)) - cut_s, 3) for i in np.flatnonzero(quiet > SILENT)[::4800]
        ]
        assert float(quiet.max()) < SILENT, (
            f"loud after the cut at {loud_at} s; cut {cut_s:.3f}, next turn {next_audio_s:.3f}, "
            f"barge-in speech from {barge_in}; journal {records}"
        )
        # Killed in the middle of turn 3's reply: the journal holds whole lines only, turns 1 and 2 in it.
        app.process.send_signal(signal.SIGKILL)
        app.process.wait(10)
        lines = [
            line for p in (app.data / "conversations").glob("*.jsonl") for line in p.read_text().splitlines()
        ]
        records = [json.loads(line) for line in lines]
        assert {(r["kind"], r.get("turn_id")) for r in records} >= {
            ("user", 1),
            ("assistant", 1),
            ("user", 2),
            ("assistant", 2),
            ("user", 3),
        }
    finally:
        if app.process.poll() is None:
            app.process.kill()
        recorder.close()
        feeder.close()


def test_quitting_while_the_model_loads_is_clean(tmp_path: Path) -> None:
    """SIGTERM while the demo model is still being built: the app exits at once, settings saved."""
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        XDG_CACHE_HOME=str(tmp_path / "cache"),  # empty: the demo model must be built first (seconds)
        OMNIDESK_CONFIG_DIR=str(tmp_path / "config"),
        OMNIDESK_DATA_DIR=str(tmp_path / "data"),
    )
    log = tmp_path / "app.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "main.py", "--demo", "--text"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while not (tmp_path / "cache" / "omnidesk").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the worker has started building the demo model
    assert process.poll() is None, log.read_text()
    process.send_signal(signal.SIGTERM)
    code = process.wait(30)
    text = log.read_text(errors="replace")
    assert code == 0, text
    assert "Traceback" not in text and "Destroyed while thread" not in text, text
    assert (tmp_path / "config" / "config.toml").is_file()


def engine_process(app: App) -> Any:
    """The app's own engine: its `omnidesk serve` child."""
    import psutil

    children = psutil.Process(app.process.pid).children(recursive=True)
    serving = [c for c in children if "serve" in c.cmdline()]
    assert len(serving) == 1, [c.cmdline() for c in children]
    return serving[0]


def test_the_engine_killed_mid_reply_comes_back_with_the_conversation(
    virtual_audio: VirtualAudio, display: str, demo_dir: Path, tmp_path: Path
) -> None:
    recorder, feeder = Recorder(SPEAKER_MONITOR), Feeder(MIC_FEED)
    app = App(tmp_path, demo_dir, display)
    try:
        app.wait_for(lambda r: bool(kinds(r, "model_ready")), "model loaded")
        feeder.play(speech("Hello there, my name is Alex.", SINK_RATE_HZ), wait=True)
        records = app.wait_for(lambda r: bool(kinds(r, "assistant", turn_id=1)), "first reply")
        (first,) = kinds(records, "assistant", turn_id=1)
        engine = engine_process(app)
        feeder.play(speech("Tell me a long story please.", SINK_RATE_HZ), wait=True)
        records = app.wait_for(lambda r: bool(kinds(r, "user", turn_id=2)), "second user turn")
        asked_s = kinds(records, "user", turn_id=2)[0]["perf_s"]
        deadline = time.monotonic() + 60
        while not loud_after(recorder, asked_s) and time.monotonic() < deadline:
            time.sleep(0.02)
        engine.kill()  # SIGKILL while the reply plays
        records = app.wait_for(lambda r: bool(kinds(r, "engine", state="restored")), "the engine back", 180)
        assert app.process.poll() is None  # the window stayed
        (lost,) = kinds(records, "engine", state="lost")
        assert "killed by signal 9" in lost["message"]
        assert any(
            "killed by signal 9" in r["message"] for r in kinds(records, "error")
        )  # shown in the window
        assert engine_process(app).pid != engine.pid
        feeder.play(speech("What is my name?", SINK_RATE_HZ), wait=True)
        records = app.wait_for(
            lambda r: any(t["turn_id"] >= 3 and not t["interrupted"] for t in kinds(r, "assistant")),
            "a reply after",
        )
        after = next(t for t in kinds(records, "assistant") if t["turn_id"] >= 3)
        asked = next(u for u in kinds(records, "user") if u["turn_id"] == after["turn_id"])
        spoken = kinds(records, "user", turn_id=2)[0]
        # Checked on the engine's side: the new engine read the conversation so far for this reply, the
        # first exchange and the second turn included. A fresh one would read about as much as turn 1 did,
        # less turn 1's audio plus this turn's (12.5 audio tokens a second).
        fresh = first["context_tokens"] + 12.5 * (
            asked["audio_s"] - kinds(records, "user", turn_id=1)[0]["audio_s"]
        )
        assert after["context_tokens"] > fresh + 12.5 * spoken["audio_s"] * 0.8, (first, after, records)
    finally:
        if app.process.poll() is None:
            app.process.terminate()
            app.process.wait(20)
        recorder.close()
        feeder.close()
