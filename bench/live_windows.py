"""How often a window prefilled while the user speaks is kept at the end of the turn:
`python -m bench.live_windows --json`.

The audio encoder's 8 s windows are prefilled live; at the end of the turn each is kept only if it
encoded what the whole turn holds. The engine floors each window's log-mel cells by the turn up to
that window (`model/turn_features.py`); transformers' extractor floors them by the whole clip (its
loudest cell - 80 dB), which a later, louder sound moves. Both rules run here on the same turns: the
engine's (`live_windows_kept_ratio`) and the whole-clip floor (`..._whole_clip_floor`), with what
the engine's rule gives the model that the extractor's would not (cells that differ, by how much,
and how far under the turn's loudest cell they lie). The turns are realistic: espeak-ng sentences
in four languages, with pauses, over a microphone's noise floor (pink noise at -65 and -50 dBFS) or
background talk 20 dB down, sent as the app sends them (24 kHz PCM in 20 ms chunks, resampled by the
server's own resampler chunk by chunk). The features are the real checkpoint's (Whisper, 128 bins,
windows of `n_window_infer` frames, from its config in `model/configs`).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import torch

from bench.rig.signals import babble, mix_at_snr, pink_noise, say
from realtime.wire import WIRE_RATE_HZ

SENTENCES = {
    "en": (
        "Could you tell me what the weather will be like tomorrow, and whether I need an umbrella?",
        "I was thinking about planting tomatoes this spring, but the garden gets little sun.",
        "Please remind me to call my sister at seven, and to buy some bread on the way home.",
        "The meeting moved to Thursday afternoon, so the report has to be ready by Wednesday.",
    ),
    "de": (
        "Kannst du mir sagen, wie das Wetter morgen wird und ob ich einen Schirm brauche?",
        "Ich habe überlegt, im Frühling Tomaten zu pflanzen, aber der Garten hat wenig Sonne.",
        "Erinnere mich bitte daran, um sieben meine Schwester anzurufen und Brot zu kaufen.",
    ),
    "es": (
        "¿Puedes decirme qué tiempo hará mañana y si necesito un paraguas para salir?",
        "Estaba pensando en plantar tomates esta primavera, pero el jardín tiene poco sol.",
        "Recuérdame llamar a mi hermana a las siete y comprar pan de camino a casa.",
    ),
    "cmn": (
        "ni neng gao su wo ming tian de tian qi zen me yang, wo xu yao dai yu san ma?",
        "wo xiang jin nian chun tian zhong xi hong shi, dan shi hua yuan li tai yang hen shao.",
        "qing ti xing wo qi dian gei jie jie da dian hua, hui jia de lu shang mai mian bao.",
    ),
}


def turn_audio(language: str, seconds: float, seed: int) -> np.ndarray:
    """Sentences of one language at 24 kHz, 0.4-1.2 s apart, until the turn is `seconds` long."""
    rng = np.random.default_rng(seed)
    parts: list[np.ndarray] = []
    total = 0
    lines = SENTENCES[language]
    while total < seconds * WIRE_RATE_HZ:
        line = lines[int(rng.integers(len(lines)))]
        speech = say(line, WIRE_RATE_HZ, language, words_per_min=int(rng.integers(150, 200)))
        speech *= float(rng.uniform(0.3, 1.0))  # the user moves, leans in, raises the voice
        gap = np.zeros(int(rng.uniform(0.4, 1.2) * WIRE_RATE_HZ), np.float32)
        parts += [speech, gap]
        total += speech.size + gap.size
    return np.concatenate(parts)[: int(seconds * WIRE_RATE_HZ)]


def with_room(audio: np.ndarray, room: str, seed: int) -> np.ndarray:
    seconds = audio.size / WIRE_RATE_HZ
    if room == "babble_20db":
        return mix_at_snr(audio, babble(seconds, WIRE_RATE_HZ, 0.05, seed=seed), 20.0)
    level_dbfs = {"pink_-65dbfs": -65.0, "pink_-50dbfs": -50.0}[room]
    noise = pink_noise(seconds, WIRE_RATE_HZ, 10 ** (level_dbfs / 20), seed=seed)
    return (audio + noise[: audio.size]).astype(np.float32)


def as_server_hears(audio: np.ndarray) -> np.ndarray:
    """int16 on the wire in 20 ms chunks, then the server's resampler to the model's 16 kHz."""
    from realtime.wire import from_wire

    wire = np.clip(audio * 32767, -32768, 32767).astype(np.int16)
    resampler = from_wire()
    chunk = WIRE_RATE_HZ // 50
    pieces = [resampler.push(wire[i : i + chunk]) for i in range(0, wire.size, chunk)]
    return np.concatenate([*pieces, resampler.push(np.zeros(0, np.float32), last=True)])


def audio_config() -> tuple[int, int]:
    """(mel bins, frames per encoder window) of the real checkpoint."""
    from bench.memory import INSTRUCT_CONFIG

    config = json.loads(INSTRUCT_CONFIG.read_text())["thinker_config"]["audio_config"]
    return int(config["num_mel_bins"]), int(config["n_window_infer"])


def kept_windows(extractor: Any, audio: np.ndarray, window: int) -> dict[str, float]:
    """Windows fed and kept under both rules, each window's features computed as the live prefill
    computes them (from the turn up to its end and margin), and the cells where the rules differ."""
    from model.turn_features import final_windows, turn_features, window_end, window_features

    def extracted(x: np.ndarray) -> torch.Tensor:
        return extractor(x, sampling_rate=16_000, return_tensors="pt", padding=False)["input_features"]

    hop = int(extractor.hop_length)
    ours, whole = turn_features(extractor, audio, window), extracted(audio)
    fed = final_windows(audio.size, hop, window)
    kept = kept_whole_clip = 0
    loudest = None
    for k in range(fed):
        cells = slice(k * window, (k + 1) * window)
        live, loudest = window_features(extractor, audio[: window_end(k, hop, window)], k, window, loudest)
        kept += bool(torch.equal(live, ours[..., cells]))
        clip = extracted(audio[: window_end(k, hop, window)])[..., cells]
        kept_whole_clip += bool(torch.equal(clip, whole[..., cells]))
    differs = ours != whole
    gap = (whole - ours)[differs] * 4 * 10  # features are (log10 power + 4) / 4
    depth = (whole.max() - ours[differs]) * 4 * 10
    return {
        "fed": fed,
        "kept": kept,
        "kept_whole_clip": kept_whole_clip,
        "cells": int(ours.numel()),
        "cells_changed": int(differs.sum()),
        "changed_db_max": float(gap.max()) if gap.numel() else 0.0,
        "changed_under_loudest_db_min": float(depth.min()) if depth.numel() else float("inf"),
    }


def trained_model_shift(turns: list[np.ndarray], extractor: Any, window: int) -> dict[str, float]:
    """How far a model trained on Whisper features (Smart Turn v3.2's Whisper-tiny encoder, which
    reads 8 s) moves its score when a window's floor lies as far under the whole turn's as the
    engine's rule puts it, against the same window read 10 ms later: a change no user controls."""
    from audio_io.smart_turn import SmartTurn
    from audio_io.smart_turn import log_mel as smart_turn_mel
    from model.turn_features import final_windows, log_mel, window_features

    model = SmartTurn()
    hop = int(extractor.hop_length)
    floor_moved: list[float] = []
    later: list[float] = []
    for audio in turns:
        whole_loudest = log_mel(extractor, audio).max()
        loudest = None
        for k in range(final_windows(audio.size, hop, window)):
            _features, loudest = window_features(extractor, audio, k, window, loudest)
            lower = float(whole_loudest - loudest)
            if lower <= 0:
                continue
            start, end = k * window * hop, (k + 1) * window * hop
            own = smart_turn_mel(audio[start:end])
            base = model.score(own)
            own_loudest = float(own.max()) * 4.0 - 4.0
            floor_moved.append(abs(model.score(smart_turn_mel(audio[start:end], own_loudest - lower)) - base))
            later.append(abs(model.score(smart_turn_mel(audio[start + hop : end + hop])) - base))
    return {
        "windows_whose_floor_moved": len(floor_moved),
        "smart_turn_shift_floor_median": float(np.median(floor_moved)),
        "smart_turn_shift_floor_max": float(np.max(floor_moved)),
        "smart_turn_shift_10ms_later_median": float(np.median(later)),
        "smart_turn_shift_10ms_later_max": float(np.max(later)),
    }


def run(turns_per_cell: int, seconds: float) -> dict[str, Any]:
    from transformers import WhisperFeatureExtractor

    bins, window = audio_config()
    extractor = WhisperFeatureExtractor(feature_size=bins)
    cells: dict[str, dict[str, float]] = {}
    every: list[np.ndarray] = []
    for room in ("pink_-65dbfs", "pink_-50dbfs", "babble_20db"):
        for language in SENTENCES:
            heard = [
                as_server_hears(with_room(turn_audio(language, seconds, s), room, s))
                for s in range(turns_per_cell)
            ]
            cells[f"{room}/{language}"] = _totals([kept_windows(extractor, audio, window) for audio in heard])
            every += heard
    total = _totals(list(cells.values()))
    return {
        **trained_model_shift(every, extractor, window),
        "live_windows_kept_ratio": total["kept"] / total["fed"],
        "live_windows_kept_ratio_whole_clip_floor": total["kept_whole_clip"] / total["fed"],
        "windows_fed": total["fed"],
        "cells_changed_share": total["cells_changed"] / total["cells"],
        "changed_cells_db_max": total["changed_db_max"],
        "changed_cells_under_loudest_db_min": total["changed_under_loudest_db_min"],
        "by_room_language": cells,
    }


def _totals(rows: list[dict[str, float]]) -> dict[str, float]:
    """Counts summed, `_max` and `_min` figures as the extreme over `rows`."""
    pick = {"_max": max, "_min": min}
    return {key: pick.get(key[-4:], sum)([row[key] for row in rows]) for key in rows[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default output)")
    parser.add_argument("--turns", type=int, default=2, help="turns per room and language")
    parser.add_argument("--seconds", type=float, default=26.0, help="length of each turn")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.turns, args.seconds), indent=2, default=lambda v: round(v, 3)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
