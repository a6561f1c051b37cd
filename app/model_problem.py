"""Why the configured model cannot be used, in words a user understands, with the technical text
kept for a "Details" click: a folder that is not there or not a checkpoint (no download offered),
a hub model not downloaded yet, a device that is not there, a hub that cannot be reached."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from facts import MODEL_ALIASES


@dataclass(frozen=True)
class ModelProblem:
    headline: str
    details: str = ""
    downloadable: bool = False  # a hub model that a download would fix
    device_failed: bool = False  # the chosen device (CUDA) is not there: offer the CPU


def is_folder_source(source: str) -> bool:
    return source.startswith((".", "/", "~")) or Path(source).expanduser().exists()


def describe(source: str, error: str) -> ModelProblem:
    """The problem behind a failed lookup or load of `source`, `error` being the raw message."""
    if re.search(r"no CUDA GPU|CUDA is not available|device .* was asked for", error, re.IGNORECASE):
        return ModelProblem(
            "The chosen device is not available on this computer (no usable CUDA GPU was found).",
            error,
            device_failed=True,
        )
    if is_folder_source(source):
        folder = Path(source).expanduser()
        if not folder.is_dir():
            return ModelProblem(f"The model folder {folder} does not exist.", error)
        return ModelProblem(f"The folder {folder} is not a usable model checkpoint.", error)
    hub_id = MODEL_ALIASES.get(source.lower(), source)
    if "not on this computer" in error or "not downloaded" in error or "forbids downloading" in error:
        named = f"{source} ({hub_id})" if hub_id != source else source
        return ModelProblem(f"The model {named} is not downloaded yet.", error, downloadable=True)
    return ModelProblem(f"The model {source} could not be used: {first_line(error)}", error)


def plain_hub_error(error: str) -> str:
    """A hub or download failure in plain words; the raw text goes to the details."""
    text = error.lower()
    if "offline" in text:
        return "offline mode is on (HF_HUB_OFFLINE is set), so the hub is not asked"
    if any(word in text for word in ("401", "403", "gated", "unauthorized", "forbidden")):
        return "the hub refused access (for a gated model, log in first: `hf auth login`)"
    if any(word in text for word in ("no space", "disk quota", "errno 28")):
        return "the disk is full"
    if any(w in text for w in ("connect", "resolve", "timed out", "timeout", "dryrun", "network", "proxy")):
        return "the Hugging Face hub cannot be reached (check the network connection or proxy)"
    return first_line(error)


def first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
