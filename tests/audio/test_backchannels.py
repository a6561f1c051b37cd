"""Sounds while the assistant speaks: a cough, a laugh or a short "mm-hm" pauses (or ducks) the reply
and resumes it; a sentence cuts it. Fed straight to the barge-in monitor, on the frame clock."""

from __future__ import annotations

import numpy as np
import pytest

from audio_io.barge_in import BargeInConfig, BargeInMonitor
from audio_io.formats import MIC_FRAME_MS, MIC_RATE_HZ
from bench.rig.signals import cough, say
from bench.rig.turn_set import frames_of
from events import BargeIn
from tests.audio.reply_player import RecordingPlayer

ONSET_S = 0.5


def during_a_reply(sound: np.ndarray, recovery: str) -> tuple[RecordingPlayer, list[tuple[int, object]]]:
    player = RecordingPlayer()
    monitor = BargeInMonitor(player, BargeInConfig(recovery=recovery))  # type: ignore[arg-type]
    silence = np.zeros(int(ONSET_S * MIC_RATE_HZ), np.float32)
    events = []
    for frame in frames_of(np.concatenate([silence, sound, silence, silence])):
        player.frame = frame.index
        events += [(frame.index, e) for e in monitor.process(frame)]
    return player, events


BACKCHANNELS = {
    "cough": lambda: cough(MIC_RATE_HZ, seed=1),
    "cough_2": lambda: cough(MIC_RATE_HZ, seed=2),
    "mm-hm": lambda: say("mm hmm", MIC_RATE_HZ, "en"),
    "uh-huh": lambda: say("uh huh", MIC_RATE_HZ, "en+f3"),
    "laugh": lambda: say("ha ha", MIC_RATE_HZ, "en"),
    "ja": lambda: say("ja", MIC_RATE_HZ, "de+m4"),
    "en (cmn)": lambda: say("en", MIC_RATE_HZ, "cmn"),
}


@pytest.mark.parametrize("recovery", ["pause", "duck"])
@pytest.mark.parametrize("name", list(BACKCHANNELS))
def test_a_backchannel_quiets_the_reply_and_resumes_it(name: str, recovery: str) -> None:
    player, events = during_a_reply(BACKCHANNELS[name](), recovery)
    actions = [what for _, what in player.log]
    assert events == [] and "flush" not in actions, (name, player.log)
    assert actions[0] == recovery and actions[-1] == "resume", (name, player.log)


SENTENCES = {
    "en": ("Stop, wait a moment.", "en"),
    "de": ("Warte mal, das stimmt nicht.", "de+f2"),
    "es": ("Espera, eso no es lo que pregunté.", "es"),
    "cmn": ("deng3 yi2 xia4, zhe4 bu2 shi4 wo3 wen4 de.", "cmn"),
}


@pytest.mark.parametrize("language", list(SENTENCES))
def test_a_sentence_quiets_the_reply_as_soon_as_a_cut_did_then_cuts_it(language: str) -> None:
    """The reply goes silent on the very frame where, without recovery, it was cut (the barge-in
    budget is unchanged); the cut itself follows once the speech outlasts `confirm_ms`."""
    text, voice = SENTENCES[language]
    sentence = say(text, MIC_RATE_HZ, voice)
    config = BargeInConfig(recovery="pause")
    player, events = during_a_reply(sentence, "pause")
    cutting, cut_events = during_a_reply(sentence, "off")
    onset = round(ONSET_S * 1000 / MIC_FRAME_MS)
    (cut_before, _), *_ = cutting.log
    (paused, _), *_ = [entry for entry in player.log if entry[1] == "pause"]
    assert paused == cut_before and (cut_before + 1 - onset) * MIC_FRAME_MS <= 300
    assert [type(e) for _, e in events] == [BargeIn] and [type(e) for _, e in cut_events] == [BargeIn]
    cut = events[0][0]
    assert config.confirm_ms <= (cut + 1 - onset) * MIC_FRAME_MS <= config.confirm_ms + 400
    assert [what for _, what in player.log if what in ("pause", "resume", "flush")][:2] == ["pause", "flush"]
