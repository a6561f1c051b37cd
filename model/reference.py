"""transformers' own `generate()` on a user turn, greedy everywhere: the reference our streaming
must equal, used by the oracle tests and by `bench.engine` for the non-streaming baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from model.media_input import UserTurn


@dataclass
class ReferenceReply:
    text_ids: list[int]
    codes: torch.Tensor | None  # (16, frames)
    waveform: torch.Tensor | None  # (samples,)


def reference_generate(
    model: Any,
    processor: Any,
    turn: UserTurn,
    *,
    system_prompt: str,
    speaker: str = "ethan",
    max_text_tokens: int,
    max_codec_frames: int,
    speak: bool = True,
) -> ReferenceReply:
    """One turn through `Qwen3OmniMoeForConditionalGeneration.generate()`, capturing its codec codes."""
    from PIL import Image

    content: list[dict[str, Any]] = []
    if turn.audio is not None:
        content.append({"type": "audio", "audio": "turn.wav"})
    content += [{"type": "image", "image": f"image{i}.png"} for i in range(len(turn.images))]
    if turn.text:
        content.append({"type": "text", "text": turn.text})
    conversation = [{"role": "system", "content": system_prompt}, {"role": "user", "content": content}]
    text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    inputs = processor(
        text=[text],
        audio=[turn.audio] if turn.audio is not None else None,
        images=[Image.fromarray(i) for i in turn.images] or None,
        return_tensors="pt",
    ).to(model.thinker.device)
    captured: list[torch.Tensor] = []
    original = model.code2wav.chunked_decode if speak else None

    def record(codes: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        captured.append(codes.clone())
        return original(codes, *args, **kwargs)  # type: ignore[misc]

    # The image + audio bug (DESIGN.md): `generate()` reads `audio_config` from the Talker's config.
    patch_config = speak and not hasattr(model.talker.config, "audio_config")
    if patch_config:
        model.talker.config.audio_config = model.config.thinker_config.audio_config
    if speak:
        model.code2wav.chunked_decode = record
    try:
        out = model.generate(
            **inputs,
            speaker=speaker,
            return_audio=speak,
            thinker_max_new_tokens=max_text_tokens,
            thinker_do_sample=False,
            talker_do_sample=False,
            talker_max_new_tokens=max_codec_frames + 1,
        )
    finally:
        if speak:
            del model.code2wav.chunked_decode
        if patch_config:
            del model.talker.config.audio_config
    sequences, waveform = (
        (out[0], out[1]) if isinstance(out, tuple) else (getattr(out, "sequences", out), None)
    )
    ids = sequences[0, inputs["input_ids"].shape[1] :].tolist()
    return ReferenceReply(
        text_ids=ids,
        codes=captured[0][0] if captured else None,
        waveform=None if waveform is None else waveform.reshape(-1),
    )
