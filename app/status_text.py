"""What the status bar and the transcript say about the model, the memory and a turn's latency."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from app.engine_client import ModelInfo
from events import TurnLatency
from facts import DEMO_LABEL


def describe_latency(latency: TurnLatency) -> str:
    parts = []
    if latency.first_text_ms is not None:
        parts.append(f"→ text {latency.first_text_ms:.0f} ms")
    if latency.first_audio_ms is not None:
        parts.append(f"→ audio {latency.first_audio_ms:.0f} ms")
    if latency.tokens_per_s is not None:
        parts.append(f"{latency.tokens_per_s:.1f} tok/s")
    return " · ".join(parts)


def memory_text(info: ModelInfo | None) -> str:
    """Process memory, and GPU memory when the model is on a GPU."""
    text = ""
    try:
        with open("/proc/self/statm") as statm:
            rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        text = f"RAM {rss / 2**30:.1f} GiB"
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    if info is not None and info.device.startswith("cuda") and "torch" in sys.modules:
        torch = sys.modules["torch"]
        text += f" · GPU {torch.cuda.memory_allocated() / 2**30:.1f} GiB"
    return text


def model_label(info: ModelInfo) -> tuple[str, str]:
    """The status bar's model label and its tooltip."""
    label = f"{Path(info.source).name or info.source} · {info.quantization} · {info.dtype} · {info.device}"
    if info.is_demo:
        label = f"{DEMO_LABEL} · {info.device}"
    tooltip = f"{info.path}\nweights {info.weight_bytes / 2**30:.2f} GiB, loaded in {info.load_s:.1f} s"
    return label, tooltip
