"""Log-mel features of a spoken turn, floored window by window so that a window never changes once
it is final.

transformers' Whisper extractor floors every cell at the clip's loudest cell minus 80 dB. Over a
whole turn, a sound later and louder than all before it moved that floor and changed every window
already prefilled while the user spoke (on realistic turns 42 % of them stayed, `bench.live_windows`).
Here each audio encoder window is floored by the loudest cell of the turn up to its end, and the
tail by the whole turn's. So each window holds the extractor's own features of the turn as it stood
when the window ended, and a turn shorter than one window gets exactly the extractor's features.
The live prefill and the one-shot prompt both use this, so they agree whatever the loudness does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

FLOOR_DECADES = 8.0  # the extractor's floor: 80 dB under the loudest cell
WINDOW_MARGIN_SAMPLES = 1600  # 0.1 s past a window: the STFT frames at its end are final


def log_mel(extractor: Any, audio: np.ndarray) -> torch.Tensor:
    """(1, bins, frames) log10 mel power of 16 kHz audio, the extractor's own steps short of its
    floor (transformers' `_torch_extract_fbank_features`, its last STFT frame dropped too; with its
    random dither if the checkpoint asks for one, though none that we know does)."""
    waveform = torch.from_numpy(np.array(audio, dtype=np.float32)).unsqueeze(0)
    if extractor.dither:
        waveform += extractor.dither * torch.randn(waveform.shape, dtype=waveform.dtype)
    window = torch.hann_window(extractor.n_fft)
    stft = torch.stft(waveform, extractor.n_fft, extractor.hop_length, window=window, return_complex=True)
    magnitudes = (stft[..., :-1].abs() ** 2).contiguous()
    mel = torch.from_numpy(extractor.mel_filters).to(torch.float32).T @ magnitudes
    return torch.clamp(mel, min=1e-10).log10()


def floored(cells: torch.Tensor, loudest: torch.Tensor) -> torch.Tensor:
    """The extractor's last two steps: the floor under `loudest`, and its scaling."""
    return (torch.maximum(cells, loudest - FLOOR_DECADES) + 4.0) / 4.0


def final_windows(samples: int, hop: int, window_frames: int) -> int:
    """Windows of a turn of `samples` whose features are final (their last frame needs the margin)."""
    return max(0, (samples - WINDOW_MARGIN_SAMPLES) // (window_frames * hop))


def window_end(k: int, hop: int, window_frames: int) -> int:
    """The samples window `k` (from 0) depends on: the turn up to its end and the margin."""
    return (k + 1) * window_frames * hop + WINDOW_MARGIN_SAMPLES


def window_features(
    extractor: Any, audio: np.ndarray, k: int, window_frames: int, loudest: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Window `k`'s features and the loudest cell of the turn through it (`loudest`: through the
    window before). Only the window's own samples are transformed, so a window costs the same
    however long the turn already is."""
    hop = int(extractor.hop_length)
    cells = _cells(extractor, audio[: window_end(k, hop, window_frames)], k * window_frames)
    cells = cells[..., :window_frames]
    loudest = _louder(loudest, cells)
    return floored(cells, loudest), loudest


def turn_features(
    extractor: Any,
    audio: np.ndarray,
    window_frames: int,
    done: Sequence[torch.Tensor] = (),
    loudest: torch.Tensor | None = None,
) -> torch.Tensor:
    """(1, bins, frames) features of the whole turn: the windows in `done` as they are (`loudest`
    through the last of them), every other final window, then the tail floored by the whole turn."""
    parts = list(done)
    hop = int(extractor.hop_length)
    for k in range(len(parts), final_windows(audio.size, hop, window_frames)):
        features, loudest = window_features(extractor, audio, k, window_frames, loudest)
        parts.append(features)
    tail = _cells(extractor, audio, len(parts) * window_frames)
    parts.append(floored(tail, _louder(loudest, tail)))
    return torch.cat(parts, dim=-1)


def _cells(extractor: Any, audio: np.ndarray, first: int) -> torch.Tensor:
    """`log_mel` of `audio` from frame `first` on, transforming only what those frames need: two
    frames of lead (a frame reaches n_fft / 2 samples back), so none of them sees the reflection
    the STFT pads a clip's start with."""
    hop = int(extractor.hop_length)
    lead = min(first, -(-int(extractor.n_fft) // (2 * hop)))
    return log_mel(extractor, audio[(first - lead) * hop :])[..., lead:]


def _louder(loudest: torch.Tensor | None, cells: torch.Tensor) -> torch.Tensor:
    top = cells.max()
    return top if loudest is None else torch.maximum(loudest, top)
