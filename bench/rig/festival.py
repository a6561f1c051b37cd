"""English speech from festival's HMM voice (`cmu_us_slt_arctic_hts`), for `bench.turns --tts festival`.

It is the one voice on this machine whose melody Smart Turn hears: on 22 English sentences against
the same sentences cut before their end, the model's ROC AUC is 0.91, against 0.42 for espeak-ng
(`python -m bench.turn_model`). A pause inside a sentence is silence put in at the end of a word of the
sentence spoken whole, so the words before it keep the melody of a sentence that goes on.
"""

from __future__ import annotations

import functools
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from bench.rig.signals import finished_speech, read_wav

VOICE = "cmu_us_slt_arctic_hts"
PACKAGES = "festival festvox-us-slt-hts (Debian, Ubuntu: apt-get install)"


def festival_say(first: str, second: str, rate_hz: int, pause_ms: int = 0) -> np.ndarray:
    """`first` and `second` spoken as one sentence, with `pause_ms` of silence between them; float32
    mono at `rate_hz`, peak 0.5, leading and trailing silence trimmed. Cached."""
    return _say(first, second, rate_hz, pause_ms).copy()


@functools.lru_cache(maxsize=512)
def _say(first: str, second: str, rate_hz: int, pause_ms: int) -> np.ndarray:
    words = len(_words(first))
    text = f"{first} {second}".replace('"', "")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        script = Path(tmp) / "say.scm"
        word = f"(nth {words - 1} (utt.relation.items u 'Word))"
        script.write_text(
            f"(voice_{VOICE})\n"
            f'(set! u (SynthText "{text}"))\n'
            f'(format t "WORD %s %f\\n" (item.name {word}) (item.feat {word} \'word_end))\n'
            f'(utt.save.wave u "{wav}" \'riff)\n'
        )
        try:
            out = subprocess.run(["festival", "-b", str(script)], check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as e:
            detail = getattr(e, "stderr", "") or str(e)
            raise RuntimeError(f"festival could not speak ({detail.strip()}); install {PACKAGES}") from e
        name, end_s = next(line.split()[1:] for line in out.stdout.splitlines() if line.startswith("WORD "))
        if name.lower() != _words(first)[-1]:
            raise ValueError(f"festival's word {words} of {text!r} is {name!r}, not the end of {first!r}")
        pcm, source_rate = read_wav(wav)
    cut = int(float(end_s) * source_rate)
    gap = np.zeros(int(pause_ms / 1000 * source_rate), np.float32)
    return finished_speech(np.concatenate([pcm[:cut], gap, pcm[cut:]]), source_rate, rate_hz)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())
