"""Sample formats shared by the whole audio layer, defined once.

The microphone side speaks 16 kHz mono int16 in 10 ms frames (what webrtcvad, the echo canceller and
the model's audio encoder take); the playback side speaks 24 kHz mono float32 (what Code2Wav makes).
"""

from __future__ import annotations

from facts import SPEECH_IN_RATE_HZ, SPEECH_OUT_RATE_HZ

MIC_RATE_HZ = SPEECH_IN_RATE_HZ
MIC_FRAME_MS = 10
MIC_FRAME_SAMPLES = MIC_RATE_HZ * MIC_FRAME_MS // 1000
PLAYBACK_RATE_HZ = SPEECH_OUT_RATE_HZ
