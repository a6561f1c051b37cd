"""A labelled set of user turns for the end-of-turn tests and `bench.turns`, built from a seed.

Each item is one utterance from espeak-ng (English, German, Spanish, Mandarin in pinyin; several
voices and speaking rates; or festival's English HMM voice, `bench/rig/festival.py`) between
silences, clean or under pink noise or background talk at 20 or 10 dB SNR, labelled with where its
speech starts and ends. Kinds: "complete" (one sentence), "pause" (a 400, 700 or 1000 ms pause
inside the sentence, where the words so far cannot end one, made so the sentence keeps its melody
across it), "filler" (the first half ends on "and um", then a pause), and "background" (babble or
pink noise alone). `run_detector` feeds an item to a detector faster than real time and returns
what happened on the item's own sample clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audio_io.formats import MIC_FRAME_SAMPLES, MIC_RATE_HZ
from audio_io.microphone import MicFrame
from bench.rig.signals import babble, pink_noise, rms, say, speech_rms

# (first half, second half): a pause goes between the halves, where the words so far cannot end a
# sentence (a first half that can, "The meeting is on Tuesday", is a turn a listener may take)
SENTENCES: dict[str, tuple[tuple[str, str], ...]] = {
    "en": (
        ("Can you tell me about", "the weather in Berlin tomorrow?"),
        ("I would like to know whether the", "train leaves on time."),
        ("Please remind me to", "call my sister and buy some milk on the way home."),
        ("The meeting is on", "Tuesday at three in the afternoon, thanks."),
        ("Could you please turn off the", "lights in the kitchen?"),
        ("What is the best way to", "learn a new language quickly?"),
        ("Set a timer for", "twenty minutes, please."),
        ("I think that we should", "leave a little earlier tonight."),
    ),
    "de": (
        ("Kannst du mir sagen, wie", "das Wetter morgen wird?"),
        ("Ich möchte wissen, ob", "der Zug pünktlich abfährt."),
        ("Wir treffen uns am", "Dienstag um drei Uhr."),
        ("Erinnere mich bitte daran,", "meine Schwester anzurufen."),
        ("Was ist der beste Weg, eine", "neue Sprache zu lernen?"),
    ),
    "es": (
        ("¿Puedes decirme qué", "tiempo hará mañana en Madrid?"),
        ("Quiero saber si", "el tren sale a tiempo."),
        ("Nos vemos el", "martes a las tres de la tarde."),
        ("Recuérdame que tengo que", "llamar a mi hermana esta noche."),
        ("¿Cuál es la mejor manera de", "aprender un idioma nuevo?"),
    ),
    "cmn": (
        ("qing3 gao4 su4 wo3 ming2 tian1 de", "tian1 qi4."),
        ("wo3 xiang3 zhi1 dao4", "huo3 che1 shen2 me shi2 hou4 kai1."),
        ("wo3 men5 xing1 qi1 er4", "xia4 wu3 san1 dian3 jian4 mian4."),
        ("qing3 ti2 xing3 wo3 gei3", "wo3 mei4 mei4 da3 dian4 hua4."),
    ),
}
FILLER = {"en": "and um", "de": "und ähm", "es": "y eh", "cmn": "ran2 hou4 en"}
VOICES = {
    "en": ("en", "en+f3", "en-us+m3", "en-us+f2"),
    "de": ("de", "de+f2", "de+m4"),
    "es": ("es", "es+f4", "es-419+m2"),
    "cmn": ("cmn", "cmn+f3", "cmn+m2"),
}
RATES_WPM = (140, 175, 210)
CONDITIONS = ("clean", "pink20", "pink10", "babble20", "babble10")
PAUSES_MS = (400, 700, 1000)
TAIL_S = 2.5  # silence (or the noise) after the speech: room for the slowest ceiling


@dataclass
class Item:
    """One labelled recording: `audio` (float32, 16 kHz) with its speech from `speech_start` to
    `speech_end` (samples; both 0 for background alone)."""

    kind: str
    condition: str
    language: str
    text: str
    audio: np.ndarray
    speech_start: int = 0
    speech_end: int = 0
    pause_ms: int = 0


@dataclass
class Outcome:
    """What a detector did with an item: turns as (start frame, end frame, audio first sample, audio
    length, ended_early); an end frame is the frame whose processing emitted `SpeechEnded`."""

    turns: list[tuple[int, int, int, int, bool]] = field(default_factory=list)


def _noise(condition: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    seed = int(rng.integers(1 << 30))
    if condition.startswith("pink"):
        return pink_noise(seconds, MIC_RATE_HZ, 0.1, seed=seed)
    return babble(seconds, MIC_RATE_HZ, 0.1, seed=seed)


def make_item(
    kind: str,
    condition: str,
    rng: np.random.Generator,
    language: str = "",
    pause_ms: int = 0,
    tts: str = "espeak-ng",
) -> Item:
    """One item of `kind` under `condition`; its sentence, voice, rate and pause drawn from `rng`
    unless `language` or `pause_ms` are given. `tts="festival"`: English from festival's HMM voice
    at its own rate (`bench/rig/festival.py`)."""
    if kind == "background":
        seconds = 20.0
        noise = _noise("babble" if condition == "clean" else condition, seconds, rng)
        return Item(kind, condition, "", "", noise * 0.5)
    language = "en" if tts == "festival" else language or str(rng.choice(list(SENTENCES)))
    first, second = SENTENCES[language][int(rng.integers(len(SENTENCES[language])))]
    voice = str(rng.choice(VOICES[language]))
    wpm = int(rng.choice(RATES_WPM))
    drawn = int(rng.choice(PAUSES_MS if kind == "pause" else PAUSES_MS[1:]))
    pause_ms = (pause_ms or drawn) if kind in ("pause", "filler") else 0
    if kind == "filler":
        first = f"{first.rstrip(',')} {FILLER[language]}"
    if tts == "festival":
        from bench.rig.festival import VOICE, festival_say

        voice, wpm = VOICE, 0
        text = f"{first} <{pause_ms} ms> {second}" if pause_ms else f"{first} {second}"
        spoken = festival_say(first, second, MIC_RATE_HZ, pause_ms)
    elif pause_ms:
        text = f"{first} <break time='{pause_ms}ms'/> {second}"
        spoken = say(text, MIC_RATE_HZ, voice, wpm, ssml=True)
    else:
        text = f"{first} {second}"
        spoken = say(text, MIC_RATE_HZ, voice, wpm)
    lead = np.zeros(int(rng.uniform(1.0, 1.6) * MIC_RATE_HZ), np.float32)
    tail = np.zeros(int(TAIL_S * MIC_RATE_HZ), np.float32)
    clean = np.concatenate([lead, spoken, tail])
    snr_db = float(condition[-2:]) if condition != "clean" else None
    if snr_db is None:
        audio = (
            clean
            + np.random.default_rng(int(rng.integers(1 << 30))).standard_normal(len(clean)).astype(np.float32)
            * 3e-4
        )  # a quiet microphone's own noise floor (-70 dBFS)
    else:
        noise = _noise(condition, len(clean) / MIC_RATE_HZ + 0.1, rng)[: len(clean)]
        audio = clean + noise * (speech_rms(spoken) / max(rms(noise), 1e-9) / 10 ** (snr_db / 20))
    return Item(kind, condition, language, f"[{voice} {wpm}] {text}", audio.astype(np.float32),
                len(lead), len(lead) + len(spoken), pause_ms)  # fmt: skip


def make_set(
    seed: int, count: int, kinds: dict[str, float] | None = None, tts: str = "espeak-ng"
) -> list[Item]:
    """`count` items: kinds in the proportions `kinds` (default: complete 0.5, pause 0.3, filler 0.1,
    background 0.1), conditions in turn, speech from `tts` (`make_item`)."""
    kinds = kinds or {"complete": 0.5, "pause": 0.3, "filler": 0.1, "background": 0.1}
    rng = np.random.default_rng(seed)
    names = list(kinds)
    weights = np.array([kinds[k] for k in names], dtype=np.float64)
    counts = np.floor(weights / weights.sum() * count).astype(int)
    counts[0] += count - counts.sum()
    items = []
    for name, n in zip(names, counts, strict=True):
        for i in range(int(n)):
            condition = (
                CONDITIONS[i % len(CONDITIONS)] if name != "background" else ("babble", "pink10")[i % 2]
            )
            items.append(make_item(name, condition, rng, tts=tts))
    return items


def frames_of(signal: np.ndarray, t0: float = 100.0) -> list[MicFrame]:
    pcm = np.clip(signal * 32768, -32768, 32767).astype(np.int16)
    n = len(pcm) // MIC_FRAME_SAMPLES
    return [
        MicFrame(pcm[i * MIC_FRAME_SAMPLES : (i + 1) * MIC_FRAME_SAMPLES], i, t0 + i * 0.01) for i in range(n)
    ]


def run_detector(detector: Any, item: Item, t0: float = 100.0) -> Outcome:
    """Feed `item` frame by frame; turns on the item's sample clock (frames of 10 ms from 0)."""
    from events import SpeechEnded, SpeechStarted

    outcome = Outcome()
    started: int | None = None
    for frame in frames_of(item.audio, t0):
        for event in detector.process(frame):
            if isinstance(event, SpeechStarted):
                started = frame.index
            elif isinstance(event, SpeechEnded) and started is not None:
                first = round((event.audio_start_s - t0) * MIC_RATE_HZ) if event.audio.size else 0
                outcome.turns.append((started, frame.index, first, int(event.audio.size), event.ended_early))
                started = None
    return outcome
