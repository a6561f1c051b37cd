"""The model the server hosts: loaded once, shared by every connection's engine under one lock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from facts import DEMO_LABEL


@dataclass(frozen=True)
class LoadOptions:
    """What `omnidesk serve` loads; `demo` builds (once) and loads the demo checkpoint."""

    source: str = "instruct"
    demo: bool = False
    device: str = "auto"
    dtype: str = "auto"
    quantization: str = "auto"
    engine_options: dict[str, Any] = field(default_factory=dict)  # extra EngineSettings fields


@dataclass
class ModelHost:
    model: Any
    processor: Any
    info: dict[str, Any]  # what clients are told about the model (`omnidesk.model_status`)
    engine_options: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def can_speak(self) -> bool:
        return bool(getattr(self.model, "has_talker", False))

    @property
    def voices(self) -> tuple[str, ...]:
        """The speakers the checkpoint's Talker knows (its config is the one source)."""
        if not self.can_speak:
            return ()
        return tuple(self.model.config.talker_config.speaker_id)

    def new_engine(self, config: Any) -> Any:
        from model.engine import Engine, EngineSettings

        settings = EngineSettings(**{**self.engine_options, **config.engine_changes()})
        return Engine(self.model, self.processor, settings)


def load_host(options: LoadOptions, status: Callable[[str], None]) -> ModelHost:
    """Load the model (raises `model.loading.ModelLoadError` with a message for the user)."""
    import time

    from model.loading import load_model

    started = time.perf_counter()
    source = options.source
    engine_options = dict(options.engine_options)
    if options.demo:
        from model.demo import DEMO_MAX_CODEC_FRAMES, DEMO_MAX_TEXT_TOKENS, demo_checkpoint_dir

        status(f"building the {DEMO_LABEL}")
        source = str(demo_checkpoint_dir())
        engine_options = {
            "max_text_tokens": DEMO_MAX_TEXT_TOKENS,
            "max_codec_frames": DEMO_MAX_CODEC_FRAMES,
            **engine_options,
        }
    loaded = load_model(
        source, device=options.device, dtype=options.dtype, quantization=options.quantization, status=status
    )
    try:
        weight_bytes = int(loaded.weight_bytes)
    except Exception:
        weight_bytes = 0
    info = {
        "source": loaded.source,
        "path": str(loaded.path),
        "device": loaded.device,
        "dtype": loaded.dtype,
        "quantization": loaded.quantization,
        "is_demo": loaded.is_demo,
        "can_speak": loaded.has_talker,
        "weight_bytes": weight_bytes,
        "load_s": round(time.perf_counter() - started, 3),
    }
    return ModelHost(loaded.model, loaded.processor, info, engine_options)
