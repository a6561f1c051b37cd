"""A model loaded and an `Engine` made in this process, from the app's `LoadRequest` (the demo's
limits applied, the request's engine options over them), and what the window is told of it. The
engine worker runs these on its thread; torch loads here, when they run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.engine_client import LoadRequest, ModelInfo
from facts import DEMO_LABEL, VOICE_CHAT_PROMPT

Loader = Callable[..., Any]  # model.loading.load_model's signature; returns a LoadedModel


def load_checkpoint(
    request: LoadRequest,
    say: Callable[[str], None],
    loader: Loader | None,
    demo_dir: Callable[[], Path] | None,
) -> Any:
    """The `LoadedModel` the request names (the demo built first when asked); `say` hears each stage."""
    source = request.source
    if request.demo:
        say(f"building the {DEMO_LABEL}")
        if demo_dir is not None:
            source = str(demo_dir())
        else:
            from model.demo import demo_checkpoint_dir

            source = str(demo_checkpoint_dir())
    if loader is None:
        from model.loading import load_model

        loader = load_model
    return loader(
        source, device=request.device, dtype=request.dtype, quantization=request.quantization, status=say
    )


def make_engine(loaded: Any, request: LoadRequest, tools: tuple[Any, ...]) -> Any:
    from model.engine import Engine, EngineSettings

    options: dict[str, Any] = {"transcribe": request.transcribe}
    if loaded.is_demo:
        from model.demo import DEMO_MAX_CODEC_FRAMES, DEMO_MAX_TEXT_TOKENS

        options |= {"max_text_tokens": DEMO_MAX_TEXT_TOKENS, "max_codec_frames": DEMO_MAX_CODEC_FRAMES}
    options.update(request.engine_options)
    settings = EngineSettings(
        speaker=request.speaker,
        system_prompt=request.system_prompt or VOICE_CHAT_PROMPT,
        speak=request.speak,
        tools=tools,
        **options,
    )
    return Engine(loaded.model, loaded.processor, settings)


def model_info(loaded: Any, request: LoadRequest, engine: Any, load_s: float) -> ModelInfo:
    return ModelInfo(
        source=loaded.source,
        path=str(loaded.path),
        device=loaded.device,
        dtype=loaded.dtype,
        quantization=loaded.quantization,
        is_demo=loaded.is_demo,
        can_speak=bool(engine.can_speak and request.speak),
        weight_bytes=_weight_bytes(loaded),
        load_s=load_s,
    )


def _weight_bytes(loaded: Any) -> int:
    try:
        return int(loaded.weight_bytes)
    except Exception:
        return 0
