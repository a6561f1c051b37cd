"""Test signals: espeak-ng speech (plain, at a speaking rate, with SSML pauses), background
talk (babble), pink and white noise, a cough-like burst, a steady vowel, and mixing at a
signal-to-noise ratio."""

from __future__ import annotations

import functools
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

BABBLE_LINES = (
    ("en", "The quarterly numbers came in lower than we expected this spring."),
    ("en+f2", "She said the train would be late again because of the snow."),
    ("de", "Wir haben am Wochenende einen langen Spaziergang am See gemacht."),
    ("es+m2", "Mi hermano compró una bicicleta nueva para ir al trabajo."),
    ("en-us+m4", "I think the new restaurant on the corner is really quite good."),
    ("de+f4", "Der Bus fährt heute nur jede halbe Stunde in die Stadt."),
    ("es+f3", "Los niños jugaban en el parque hasta que empezó a llover."),
    ("cmn", "wo3 men5 ming2 tian1 yi4 qi3 qu4 chao1 shi4 mai3 dong1 xi1."),
    ("en+m7", "Could you pass me the report from last week when you have a minute?"),
    ("fr", "Nous avons parlé du projet pendant tout le déjeuner hier."),
)


@functools.lru_cache(maxsize=512)
def _say(text: str, rate_hz: int, voice: str, words_per_min: int, ssml: bool) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        command = ["espeak-ng", "-v", voice, "-s", str(words_per_min), "-w", str(path)]
        command += ["-m", f"<speak>{text}</speak>"] if ssml else [text]
        subprocess.run(command, check=True, capture_output=True)
        pcm, source_rate = read_wav(path)
    return finished_speech(pcm, source_rate, rate_hz)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A mono 16-bit WAV file as float32 in [-1, 1], and its rate."""
    with wave.open(str(path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
        return pcm, w.getframerate()


def finished_speech(pcm: np.ndarray, source_rate: int, rate_hz: int) -> np.ndarray:
    """A synthesizer's output at `rate_hz`, peak 0.5, leading and trailing silence trimmed, read-only
    (the callers cache it)."""
    import soxr

    pcm = np.asarray(soxr.resample(pcm, source_rate, rate_hz), dtype=np.float32)
    loud = np.flatnonzero(np.abs(pcm) > 0.01)
    out = pcm[loud[0] : loud[-1] + 1] * (0.5 / max(1e-6, float(np.abs(pcm).max())))
    out.setflags(write=False)
    return out


def say(
    text: str, rate_hz: int, voice: str = "en", words_per_min: int = 175, ssml: bool = False
) -> np.ndarray:
    """espeak-ng speaking `text` (SSML when `ssml`, e.g. `<break time='700ms'/>` inside a sentence),
    float32 mono at `rate_hz`, peak 0.5, leading and trailing silence trimmed. Cached."""
    return _say(text, rate_hz, voice, words_per_min, ssml).copy()


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def speech_rms(x: np.ndarray, frame: int = 160) -> float:
    """RMS over the frames that carry sound (the level a listener calls the speech's level)."""
    n = len(x) // frame * frame
    power = np.mean(np.square(x[:n].reshape(-1, frame), dtype=np.float64), axis=1)
    loud = power[power > 1e-4 * power.max()] if power.size else power
    return float(np.sqrt(np.mean(loud))) if loud.size else 0.0


def babble(seconds: float, rate_hz: int, level_rms: float, seed: int = 0, talkers: int = 6) -> np.ndarray:
    """Background talk: `talkers` voices, each reading lines back to back from a random offset, summed
    and scaled to `level_rms`."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate_hz)
    total = np.zeros(n, np.float64)
    for _ in range(talkers):
        track: list[np.ndarray] = []
        length = 0
        while length < n + 10 * rate_hz:
            voice, line = BABBLE_LINES[int(rng.integers(len(BABBLE_LINES)))]
            words_per_min = int(rng.choice((150, 175, 200)))  # few rates: the lines stay cached
            gap = np.zeros(int(rng.uniform(0.1, 0.6) * rate_hz), np.float32)
            track += [say(line, rate_hz, voice, words_per_min), gap]
            length += len(track[-2]) + len(gap)
        joined = np.concatenate(track)
        start = int(rng.integers(0, len(joined) - n))
        total += joined[start : start + n] * rng.uniform(0.6, 1.0)
    return (total * (level_rms / max(rms(total.astype(np.float32)), 1e-9))).astype(np.float32)


def cough(rate_hz: int, seed: int = 0, peak: float = 0.5) -> np.ndarray:
    """A cough-like burst: a sharp noisy explosion (~120 ms) running into a short voiced "uh" at a
    random pitch (~150 ms, harmonics decaying), as a throat clears; about 0.3 s in all."""
    rng = np.random.default_rng(seed)
    burst_n, voiced_n = int(0.12 * rate_hz), int(0.15 * rate_hz)
    noise = rng.standard_normal(burst_n)
    spectrum = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(burst_n, 1 / rate_hz)
    spectrum *= np.exp(-(((freqs - 700) / 800) ** 2)) + 0.4 * np.exp(-(((freqs - 2500) / 900) ** 2))
    t = np.arange(burst_n) / rate_hz
    burst = np.fft.irfft(spectrum, burst_n) * np.minimum(t / 0.005, 1.0) * np.exp(-t / 0.08)
    burst /= np.abs(burst).max()
    tv = np.arange(voiced_n) / rate_hz
    phase = 2 * np.pi * np.cumsum(np.full(voiced_n, rng.uniform(110, 180))) / rate_hz
    voiced = sum(np.sin(k * phase) / k**1.5 for k in range(1, 15)) * np.exp(-tv / 0.06)
    voiced = 0.6 * voiced / np.abs(voiced).max()
    x = np.concatenate([burst, np.zeros(int(0.01 * rate_hz)), voiced])
    return (x * peak).astype(np.float32)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`speech + noise`, the noise scaled so that speech level (sounding frames) / noise RMS = `snr_db`."""
    noise = noise[: len(speech)]
    scale = speech_rms(speech) / max(rms(noise), 1e-9) / 10 ** (snr_db / 20)
    return (speech + noise * scale).astype(np.float32)


def speech(text: str, rate_hz: int, voice: str = "en") -> np.ndarray:
    """espeak-ng speaking `text`, float32 mono at `rate_hz`, with its leading/trailing silence trimmed."""
    import soxr

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True)
        with wave.open(str(path)) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
            source_rate = w.getframerate()
    pcm = np.asarray(soxr.resample(pcm, source_rate, rate_hz), dtype=np.float32)
    loud = np.flatnonzero(np.abs(pcm) > 0.01)
    return pcm[loud[0] : loud[-1] + 1] * (0.5 / max(1e-6, float(np.abs(pcm).max())))


def harmonic_voice(seconds: float, rate_hz: int, amplitude: float = 0.3) -> np.ndarray:
    """A continuous vowel-like signal (no pauses): where it stops on the monitor is where playback stopped."""
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate_hz
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    return (amplitude * x / np.max(np.abs(x))).astype(np.float32)


def white_noise(seconds: float, rate_hz: int, rms: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * rate_hz)) * rms).astype(np.float32)


def pink_noise(seconds: float, rate_hz: int, rms: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * rate_hz)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
    spectrum[0] = 0
    pink = np.fft.irfft(spectrum, n)
    return (pink * rms / pink.std()).astype(np.float32)


def silence(seconds: float, rate_hz: int) -> np.ndarray:
    return np.zeros(int(seconds * rate_hz), dtype=np.float32)


def find_offset(haystack: np.ndarray, needle: np.ndarray) -> tuple[int, float]:
    """Where `needle` best matches inside `haystack` (FFT cross-correlation) and the normalized peak."""
    n = len(haystack) + len(needle)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(haystack, size) * np.conj(np.fft.rfft(needle, size)), size)
    corr = corr[: len(haystack) - len(needle) + 1] if len(haystack) >= len(needle) else corr[:1]
    offset = int(np.argmax(corr))
    window = haystack[offset : offset + len(needle)]
    norm = float(np.linalg.norm(window) * np.linalg.norm(needle)) or 1.0
    return offset, float(corr[offset] / norm)


# -- streams ---------------------------------------------------------------------------------------
