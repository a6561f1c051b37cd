"""A turn's features floored window by window: transformers' extractor exactly wherever the floor
does not move, each window as the extractor gives it for the turn up to that window's end, and
nothing a later sound can change."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import WhisperFeatureExtractor

from model.turn_features import FLOOR_DECADES, final_windows, turn_features, window_end

RATE = 16_000
WINDOW = 800  # the real checkpoint's `n_window_infer`: 8 s of 10 ms frames
EXTRACTOR = WhisperFeatureExtractor(feature_size=128)  # the real checkpoint's settings


def extractor(audio: np.ndarray) -> torch.Tensor:
    """The features the processor computes for a whole clip (floored by its loudest cell)."""
    features = EXTRACTOR(
        [audio], sampling_rate=RATE, padding="longest", truncation=False, return_tensors="pt"
    )
    return features["input_features"]


def voice(seconds: float, level: float, seed: int) -> np.ndarray:
    """A gliding harmonic voice with syllables, over a faint noise floor, at `level` peak."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 120 + 40 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    harmonics = sum(np.sin(h * phase) / h for h in range(1, 12))
    syllables = np.clip(np.sin(2 * np.pi * 3.1 * t), 0, None)
    noise = 3e-5 * rng.standard_normal(t.size)
    return (level * syllables * harmonics / 3 + noise).astype(np.float32)


def quiet_then_loud(seed: int = 0) -> np.ndarray:
    """A user who starts 30 dB down and then leans in: the loudest sound comes in the third window."""
    return np.concatenate([voice(17.0, 0.02, seed), voice(9.0, 0.7, seed + 1)])


@pytest.mark.parametrize("seconds", [0.5, 3.0, 8.09, 8.11, 17.0])
def test_where_the_floor_does_not_move_they_are_the_extractors_features(seconds: float) -> None:
    audio = voice(seconds, 0.5, seed=int(seconds * 100))
    assert torch.equal(turn_features(EXTRACTOR, audio, WINDOW), extractor(audio))


def test_each_window_is_the_extractors_features_of_the_turn_up_to_its_end() -> None:
    audio = quiet_then_loud()
    ours, whole = turn_features(EXTRACTOR, audio, WINDOW), extractor(audio)
    assert ours.shape == whole.shape
    windows = final_windows(audio.size, EXTRACTOR.hop_length, WINDOW)
    assert windows == 3
    for k in range(windows):
        cells = slice(k * WINDOW, (k + 1) * WINDOW)
        so_far = audio[: window_end(k, EXTRACTOR.hop_length, WINDOW)]
        assert torch.equal(ours[..., cells], extractor(so_far)[..., cells])
        # A window is final: neither the rest of the turn nor any later sound changes it.
        assert torch.equal(ours[..., cells], turn_features(EXTRACTOR, so_far, WINDOW)[..., cells])
    # The loud ending does move the whole clip's floor under the quiet windows.
    assert not torch.equal(ours[..., : 2 * WINDOW], whole[..., : 2 * WINDOW])
    tail = slice(windows * WINDOW, None)
    assert torch.equal(ours[..., tail], whole[..., tail])


def test_they_differ_from_the_whole_clips_only_in_cells_it_floors() -> None:
    """Where the two differ, the extractor put the cell at its floor (80 dB under the turn's
    loudest) and the window's own floor left it lower: nothing above the floor is touched."""
    audio = quiet_then_loud(seed=5)
    ours, whole = turn_features(EXTRACTOR, audio, WINDOW), extractor(audio)
    differs = ours != whole
    assert differs.any()
    floor = whole.min()
    assert torch.isclose(floor, whole.max() - FLOOR_DECADES / 4)
    assert torch.all(whole[differs] == floor)
    assert torch.all(ours[differs] < floor)


def test_a_checkpoint_that_asks_for_a_dither_gets_it() -> None:
    """transformers' extractor adds its `dither` as noise before the STFT; so do these (a dither
    140 dB down moves next to nothing)."""
    audio = quiet_then_loud(seed=7)
    dithered = WhisperFeatureExtractor(feature_size=128, dither=1e-7)
    plain = turn_features(EXTRACTOR, audio, WINDOW)
    features = turn_features(dithered, audio, WINDOW)
    assert features.shape == plain.shape
    assert torch.allclose(features, plain, atol=0.05)
