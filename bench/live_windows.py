"""How often a window prefilled while the user speaks is kept at the end of the turn:
`python -m bench.live_windows --json`.

The audio encoder's 8 s windows are prefilled live; at the end of the turn each is kept only if its
log-mel features equal the whole turn's. They do not when a later sound is louder than everything
before it: the feature extractor floors every cell at (the turn's loudest cell - 80 dB), and a cell
of the window that lay under the new floor changes. The turns here are realistic: espeak-ng
sentences in four languages, with pauses, over a microphone's noise floor (pink noise at -65 and
-50 dBFS) or background talk 20 dB down, sent as the app sends them (24 kHz PCM, resampled by the
server's own resampler). The features are the real checkpoint's (Whisper, 128 bins, windows of
`n_window_infer` frames, from its config in `model/configs`).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

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
    """int16 on the wire, then the server's resampler to the model's 16 kHz, as one stream."""
    from realtime.wire import from_wire

    wire = np.clip(audio * 32767, -32768, 32767).astype(np.int16)
    resampler = from_wire()
    head = resampler.push(wire)
    return np.concatenate([head, resampler.push(np.zeros(0, np.float32), last=True)])


def audio_config() -> tuple[int, int]:
    """(mel bins, frames per encoder window) of the real checkpoint."""
    from bench.memory import INSTRUCT_CONFIG

    config = json.loads(INSTRUCT_CONFIG.read_text())["thinker_config"]["audio_config"]
    return int(config["num_mel_bins"]), int(config["n_window_infer"])


def kept_windows(extractor: Any, audio: np.ndarray, window: int) -> tuple[int, int]:
    """(windows kept, windows fed): each window's features as the live prefill computed them (the
    turn up to the window's end and its margin) against the whole turn's."""
    from model.live_turn import WINDOW_MARGIN_SAMPLES

    def features(x: np.ndarray) -> np.ndarray:
        return extractor(x, sampling_rate=16_000, return_tensors="np", padding=False)["input_features"][0]

    whole = features(audio)
    hop = int(extractor.hop_length)
    fed = (audio.size - WINDOW_MARGIN_SAMPLES) // (window * hop)
    kept = 0
    for k in range(1, fed + 1):
        live = features(audio[: k * window * hop + WINDOW_MARGIN_SAMPLES])
        cells = slice((k - 1) * window, k * window)
        kept += bool(np.array_equal(live[:, cells], whole[:, cells]))
    return kept, fed


def run(turns_per_cell: int, seconds: float) -> dict[str, Any]:
    from transformers import WhisperFeatureExtractor

    bins, window = audio_config()
    extractor = WhisperFeatureExtractor(feature_size=bins)
    cells: dict[str, dict[str, int]] = {}
    for room in ("pink_-65dbfs", "pink_-50dbfs", "babble_20db"):
        for language in SENTENCES:
            kept = fed = 0
            for seed in range(turns_per_cell):
                audio = as_server_hears(with_room(turn_audio(language, seconds, seed), room, seed))
                k, n = kept_windows(extractor, audio, window)
                kept, fed = kept + k, fed + n
            cells[f"{room}/{language}"] = {"kept": kept, "fed": fed}
    kept_all = sum(c["kept"] for c in cells.values())
    fed_all = sum(c["fed"] for c in cells.values())
    return {"live_windows_kept_ratio": kept_all / fed_all, "windows_fed": fed_all, "by_room_language": cells}


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
