"""Silero VAD (a trained voice detector, MIT) through onnxruntime, on our 10 ms frames.

The model takes 32 ms chunks (512 samples at 16 kHz, plus 64 samples of the previous chunk as
context) and carries a recurrent state; we gather frames into chunks and every frame reads the
probability of the newest complete chunk. About 0.1 ms a chunk on one core.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from audio_io.formats import MIC_RATE_HZ
from audio_io.model_files import SILERO_VAD, require

CHUNK_SAMPLES = 512
_CONTEXT_SAMPLES = 64


def cpu_session(path: str, threads: int = 1) -> Any:
    """An onnxruntime session on the CPU that stays on `threads` cores (the app shares them)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


class SileroVad:
    """Stateful per stream: `probability(frame)` on consecutive int16 frames; `reset()` between streams."""

    _shared: Any = None  # one session for every stream (sessions are thread-safe; state is ours)

    def __init__(self) -> None:
        if SileroVad._shared is None:
            SileroVad._shared = cpu_session(str(require(SILERO_VAD)))
        self._session = SileroVad._shared
        self._pending = np.zeros(0, np.float32)
        self._sr = np.array(MIC_RATE_HZ, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros((1, _CONTEXT_SAMPLES), np.float32)
        self._pending = np.zeros(0, np.float32)
        self._probability = 0.0

    def probability(self, frame: np.ndarray) -> float:
        """Speech probability of the newest complete 32 ms chunk, after adding this frame."""
        self._pending = np.concatenate([self._pending, np.asarray(frame, np.float32) / 32768.0])
        while self._pending.size >= CHUNK_SAMPLES:
            chunk, self._pending = self._pending[:CHUNK_SAMPLES], self._pending[CHUNK_SAMPLES:]
            x = np.concatenate([self._context, chunk[None, :]], axis=1)
            out, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._sr})
            self._context = x[:, -_CONTEXT_SAMPLES:]
            self._probability = float(out[0, 0])
        return self._probability
