"""Loading a Qwen3-Omni checkpoint (a Hugging Face id or a local folder) with its own processor.

Every way this can go wrong ends in `ModelLoadError`, whose message names the id or path and says
what to do next; the app shows it in the window and keeps running.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from facts import DTYPES, MODEL_ALIASES, QUANTIZATIONS

Quantization = Literal["auto", "none", "nf4"]


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says which and what to do."""


@dataclass
class LoadedModel:
    model: Any
    processor: Any
    path: Path
    source: str
    device: str
    dtype: str
    quantization: str
    is_demo: bool

    @property
    def has_talker(self) -> bool:
        return bool(getattr(self.model, "has_talker", False))

    @property
    def weight_bytes(self) -> int:
        from model.weight_placement import weight_bytes

        return weight_bytes(self.model)


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def resolve_checkpoint(source: str) -> Path:
    """The local folder of `source`: a path as is, or a hub id from the local cache (never
    downloaded here: `app.download` does that, with progress)."""
    source = MODEL_ALIASES.get(source.lower(), source)
    path = Path(source).expanduser()
    if path.exists() or source.startswith((".", "/", "~")):
        if not path.is_dir():
            raise ModelLoadError(f"model folder {path} does not exist (or is not a folder)")
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, local_files_only=True))
    except Exception as error:
        raise ModelLoadError(
            f"model {source!r} is not on this computer: it is not downloaded. Download it first "
            f"(`omnidesk --download {source}`, or the window's first-run dialog), choose a local folder "
            f"with --model PATH, or run the demo model with --demo."
        ) from error


def check_checkpoint(path: Path) -> dict[str, Any]:
    """Read and check `config.json` and the weights' presence; returns the config dict."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{path} has no config.json: it is not a model checkpoint folder")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise ModelLoadError(
            f"{config_file} is broken (line {error.lineno}, column {error.colno}: {error.msg}); "
            "download the checkpoint again"
        ) from error
    if config.get("model_type") != "qwen3_omni_moe":
        raise ModelLoadError(
            f"{config_file} describes a {config.get('model_type')!r} model; Omni Desk runs Qwen3-Omni "
            "(model_type 'qwen3_omni_moe')"
        )
    if not any(path.glob("*.safetensors")):
        raise ModelLoadError(
            f"{path} has no weights (*.safetensors): the download is incomplete; fetch it again"
        )
    return config


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(
            f"device {device!r} was asked for, but no CUDA GPU is available; use --device cpu"
        )
    return device


def load_model(
    source: str,
    *,
    device: str = "auto",
    dtype: str = "auto",
    quantization: str = "auto",
    status: Callable[[str], None] | None = None,
) -> LoadedModel:
    """Load checkpoint `source` onto `device`: bf16 and NF4 on CUDA by default, float32 on the CPU."""
    import torch

    say = status or (lambda _message: None)
    if quantization not in QUANTIZATIONS:
        raise ModelLoadError(
            f"unknown quantization {quantization!r}; choose one of {', '.join(QUANTIZATIONS)}"
        )
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    device = pick_device(device)
    on_gpu = device.startswith("cuda")
    dtype = dtype if dtype != "auto" else ("bfloat16" if on_gpu else "float32")
    quantization = quantization if quantization != "auto" else ("nf4" if on_gpu else "none")
    say(f"finding {source}")
    path = resolve_checkpoint(source)
    check_checkpoint(path)
    from model.demo import is_demo_checkpoint

    torch_dtype = getattr(torch, dtype)
    try:
        say(f"loading the processor from {path}")
        from transformers import AutoProcessor, GenerationConfig

        processor = AutoProcessor.from_pretrained(path)
        model: Any
        say(f"loading weights ({quantization}, {dtype}) onto {device}")
        if quantization == "none":
            from transformers import Qwen3OmniMoeForConditionalGeneration

            model = Qwen3OmniMoeForConditionalGeneration.from_pretrained(
                path, dtype=torch_dtype, device_map=device
            )
        else:
            from model.quantize import load_quantized

            model, _report = load_quantized(path, quantization, device, torch_dtype)  # type: ignore[arg-type]
            if (path / "generation_config.json").is_file():
                model.generation_config = GenerationConfig.from_pretrained(path)
    except ModelLoadError:
        raise
    except Exception as error:
        raise ModelLoadError(f"could not load model from {path}: {type(error).__name__}: {error}") from error
    model.eval()
    return LoadedModel(
        model=model,
        processor=processor,
        path=path,
        source=source,
        device=device,
        dtype=dtype,
        quantization=quantization,
        is_demo=is_demo_checkpoint(path),
    )
