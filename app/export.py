"""Export a conversation: a markdown transcript and a stereo WAV (left: the user, right: the assistant).

The WAV lays the turns out one after another at 24 kHz: each user turn (resampled from 16 kHz) on
the left channel, then the reply as it was heard on the right, with a short gap between them.
"""

from __future__ import annotations

import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.recording import TurnRecord
from facts import SPEECH_IN_RATE_HZ, SPEECH_OUT_RATE_HZ, to_float, to_int16

OUT_RATE_HZ = SPEECH_OUT_RATE_HZ
GAP_S = 0.3


@dataclass(frozen=True)
class Exported:
    markdown: Path
    wav: Path | None
    wav_s: float


def markdown(history: Sequence[Any], *, title: str, details: str) -> str:
    lines = [f"# {title}", "", details, ""]
    for message in history:
        if message.role == "user":
            spoken = f" ({message.audio_s:.1f} s of speech)" if message.audio_s else ""
            lines.append(f"**You**{spoken}: {message.text}")
        else:
            mark = " *(interrupted: the rest was not heard)*" if message.interrupted else ""
            lines.append(f"**Assistant**: {message.text}{mark}")
        lines.append("")
    return "\n".join(lines)


def to_24k(audio: np.ndarray, rate_hz: int = SPEECH_IN_RATE_HZ) -> np.ndarray:
    samples = np.asarray(audio)
    samples = to_float(samples).reshape(-1)
    if rate_hz == OUT_RATE_HZ or samples.size == 0:
        return samples
    length = round(samples.size * OUT_RATE_HZ / rate_hz)
    return np.interp(np.arange(length) * rate_hz / OUT_RATE_HZ, np.arange(samples.size), samples).astype(
        np.float32
    )


def stereo(turns: Sequence[TurnRecord]) -> np.ndarray:
    """(n, 2) float32: the user's turns left, the assistant's replies right, in order."""
    gap = np.zeros(int(GAP_S * OUT_RATE_HZ), np.float32)
    left: list[np.ndarray] = []
    right: list[np.ndarray] = []
    for turn in turns:
        user = to_24k(turn.user_audio) if turn.user_audio is not None else np.zeros(0, np.float32)
        reply = turn.reply_audio()
        for part, side in ((user, 0), (reply, 1)):
            if part.size == 0:
                continue
            silent = np.zeros_like(part)
            left += [part if side == 0 else silent, gap]
            right += [part if side == 1 else silent, gap]
    if not left:
        return np.zeros((0, 2), np.float32)
    return np.stack([np.concatenate(left), np.concatenate(right)], axis=1)


def write_wav(path: Path, audio: np.ndarray, rate_hz: int = OUT_RATE_HZ) -> None:
    channels = audio.shape[1] if audio.ndim == 2 else 1
    pcm = to_int16(audio).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate_hz)
        out.writeframes(pcm.tobytes())


def export_conversation(
    folder: Path, history: Sequence[Any], turns: Sequence[TurnRecord], *, details: str, stem: str = ""
) -> Exported:
    folder.mkdir(parents=True, exist_ok=True)
    stem = stem or time.strftime("omnidesk-%Y%m%d-%H%M%S")
    md_path = folder / f"{stem}.md"
    audio = stereo(turns)
    wav_path: Path | None = None
    if audio.size:
        wav_path = folder / f"{stem}.wav"
        write_wav(wav_path, audio)
    text = markdown(history, title="Omni Desk conversation", details=details)
    if wav_path is not None:
        text += (
            f"\nAudio of both sides (left: you, right: the assistant): [{wav_path.name}]({wav_path.name})\n"
        )
    md_path.write_text(text, encoding="utf-8")
    return Exported(md_path, wav_path, audio.shape[0] / OUT_RATE_HZ)
