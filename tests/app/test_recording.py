"""The turn recording kept for export: bounded memory, cut replies, the stereo layout."""

from __future__ import annotations

import numpy as np

from app.export import GAP_S, OUT_RATE_HZ, stereo
from app.recording import Recording


def test_the_recording_keeps_the_latest_turns_within_its_bound() -> None:
    recording = Recording(max_audio_s=2.0)
    for turn in range(1, 51):
        recording.user(turn, np.full(8000, 1000, np.int16))  # 0.5 s at 16 kHz = 0.5 s at 24 kHz
        recording.reply(turn, np.full(12_000, 0.25, np.float32))  # 0.5 s
    kept = recording.turns()
    assert recording.held_samples <= 2.0 * 24_000
    assert [t.turn_id for t in kept] == [49, 50]


def test_a_cut_reply_keeps_what_was_heard_and_sides_are_separate() -> None:
    recording = Recording()
    recording.user(1, np.full(1600, 16384, np.int16))
    recording.reply(1, np.full(4800, 0.5, np.float32))
    recording.cut(1, 2400)
    (turn,) = recording.turns()
    assert turn.reply_audio().size == 2400
    audio = stereo([turn])
    gap = int(GAP_S * OUT_RATE_HZ)
    assert audio.shape == (2400 + 2400 + 2 * gap, 2)
    assert np.allclose(audio[:2400, 0], 0.5, atol=0.01) and not audio[:2400, 1].any()
    assert np.allclose(audio[2400 + gap : 4800 + gap, 1], 0.5, atol=0.01)
