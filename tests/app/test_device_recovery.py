"""Each device on its own (issue 14), the app on virtual devices while a conversation runs: the
microphone is unplugged and replugged, then the speaker (while a reply plays), then both. The other
device keeps working (a typed turn is still spoken aloud while the microphone is away; a spoken turn
is still taken and answered in text while the speaker is away), the window lists the lost device's
problem and takes it away when the device works again, and the next spoken turn gets a spoken
reply, without a restart. Unplugging is unloading a PulseAudio null sink, as in the audio layer's
tests. Test streams (the feeder into the microphone, the recorder of the speaker) are opened only
while their own device is plugged in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app import config as cfg
from app.desk import Desk
from app.launch import Launch
from app.session import State
from bench.rig.pulse import MIC, MIC_FEED, SINK_RATE_HZ, SPEAKER, SPEAKER_MONITOR, Feeder, Recorder
from bench.rig.signals import speech
from tests.app.helpers import FAST, on_report

pytestmark = [pytest.mark.audio, pytest.mark.slow]
HEARD = 1e-3


class Talk:
    """The app on the virtual devices, and the turns it finished."""

    def __init__(self, qtbot: Any, desk: Desk) -> None:
        self.qtbot, self.desk = qtbot, desk
        self.finished: list[int] = []
        self.cut: list[int] = []  # replies reported as interrupted (a lost speaker cuts one mid-reply)
        on_report(desk.session, "reply_finished", lambda turn_id, _stats: self.finished.append(turn_id))
        on_report(desk.session, "reply_interrupted", lambda turn_id, _kept: self.cut.append(turn_id))

    def errors(self) -> str:
        return self.desk.window.error_banner.text()

    def lost(self, what: str) -> None:
        """The window lists the device's problem, and both pickers stay usable."""
        self.qtbot.waitUntil(lambda: f"The {what} " in self.errors(), timeout=30_000)
        window = self.desk.window
        assert window.output_box.isEnabled() and window.input_box.isEnabled()

    def back(self, what: str) -> None:
        """The window says the device works again, and its problem is gone from the list."""
        self.qtbot.waitUntil(lambda: backs(self.desk, what) > 0, timeout=30_000)
        assert f"The {what} " not in self.errors()

    def typed_turn_answered(self) -> None:
        turn = self.desk.session.send_text("are you there?")
        self.qtbot.waitUntil(lambda: turn in self.finished, timeout=60_000)
        assert self.last_reply_text()

    def spoken_turn_answered(self, feeder: Feeder) -> None:
        before = len(self.finished)
        feeder.play(speech("Hello there, how are you today?", SINK_RATE_HZ), wait=True)
        self.qtbot.waitUntil(lambda: len(self.finished) > before, timeout=60_000)

    def last_reply_text(self) -> str:
        replies = [e for e in self.desk.window.transcript.entries if e.role == "assistant" and e.turn_id >= 0]
        return replies[-1].text if replies else ""


@pytest.fixture
def talk(
    qtbot: Any, demo: Any, virtual_audio: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Talk]:
    monkeypatch.setenv(cfg.CONFIG_DIR_ENV, str(tmp_path / "config"))
    config = cfg.with_changes(cfg.Config(), audio={"input_device": MIC, "output_device": SPEAKER})
    launch = Launch(cfg.LoadedConfig(config, tmp_path / "config" / "config.toml"), demo=True)
    desk = Desk(
        launch,
        loader=lambda source, **kw: demo,
        demo_dir=lambda: Path("demo"),
        engine_options={**FAST, "max_codec_frames": 40},  # a reply plays for 3.2 s
    )
    qtbot.addWidget(desk.window)
    talk = Talk(qtbot, desk)
    desk.start()
    qtbot.waitUntil(lambda: desk.session.model_info is not None, timeout=60_000)
    qtbot.waitUntil(
        lambda: desk.window.input_box.isEnabled() and desk.window.input_box.count() > 1, timeout=30_000
    )
    try:
        yield talk
    finally:
        for server in ("speaker", "mic"):  # the next test's devices are all there
            if virtual_audio.servers[server].sink_module is None:
                virtual_audio.load_sink(server)
        desk.window.close()
    assert desk.closed_cleanly


def test_the_microphone_fails_and_comes_back_while_the_speaker_works(talk: Talk, virtual_audio: Any) -> None:
    with recording() as recorder:
        virtual_audio.unload_sink("mic")
        talk.lost("microphone")
        talk.typed_turn_answered()  # typed turns are still spoken aloud
        talk.qtbot.waitUntil(lambda: heard(recorder), timeout=30_000)
    virtual_audio.load_sink("mic")
    talk.back("microphone")
    spoken_turn_gets_a_spoken_reply(talk)


def test_the_speaker_fails_and_comes_back_while_the_microphone_works(talk: Talk, virtual_audio: Any) -> None:
    feeder = Feeder(MIC_FEED)
    try:
        desk = talk.desk
        turn = desk.session.send_text("tell me a story")
        talk.qtbot.waitUntil(lambda: desk.player.speaking_turn() == turn, timeout=60_000)
        virtual_audio.unload_sink("speaker")  # while its reply plays
        talk.lost("speaker")
        talk.qtbot.waitUntil(
            lambda: turn in talk.finished + talk.cut and desk.session.state == State.LISTENING, timeout=30_000
        )
        talk.spoken_turn_answered(feeder)  # the microphone still takes a turn; its reply is text
        assert talk.last_reply_text()
    finally:
        feeder.close()
    virtual_audio.load_sink("speaker")
    talk.back("speaker")
    spoken_turn_gets_a_spoken_reply(talk)


def test_both_fail_and_come_back(talk: Talk, virtual_audio: Any) -> None:
    talk.typed_turn_answered()
    virtual_audio.unload_sink("speaker")
    virtual_audio.unload_sink("mic")
    talk.lost("speaker")
    talk.lost("microphone")
    talk.typed_turn_answered()  # the window still answers in text
    virtual_audio.load_sink("speaker")
    virtual_audio.load_sink("mic")
    talk.back("speaker")
    talk.back("microphone")
    spoken_turn_gets_a_spoken_reply(talk)


def heard(recorder: Recorder) -> bool:
    return bool(np.abs(recorder.samples()).max(initial=0.0) > HEARD)


@contextmanager
def recording() -> Iterator[Recorder]:
    """A recorder of what the speaker plays, for the span of a `with`."""
    recorder = Recorder(SPEAKER_MONITOR)
    try:
        yield recorder
    finally:
        recorder.close()


def backs(desk: Desk, what: str) -> int:
    """How often the window said the device works again."""
    return sum(f"The {what} " in n and "works again" in n for n in desk.window.info_text().splitlines())


def spoken_turn_gets_a_spoken_reply(talk: Talk) -> None:
    """A sentence into the microphone: a turn is taken and its reply is heard at the speaker."""
    feeder = Feeder(MIC_FEED)
    try:
        with recording() as recorder:
            talk.spoken_turn_answered(feeder)
            talk.qtbot.waitUntil(lambda: heard(recorder), timeout=30_000)
    finally:
        feeder.close()
