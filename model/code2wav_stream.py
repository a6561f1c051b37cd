"""Exact incremental Code2Wav: decode codec frames as they arrive, carrying each layer's state.

The one-shot `Qwen3OmniMoeCode2Wav.forward` over n frames returns n * 1920 - 555 samples: every causal
transposed convolution trims the outputs that would still need a later frame. It is causal end to end,
so the same samples can be produced frame by frame, equal up to float rounding, by keeping
- each pre-transformer layer's last `sliding_window - 1` rotated keys and values (transformers'
  sliding-window `DynamicCache`, which also carries the absolute rotary position),
- each causal convolution's last `padding` inputs in place of its zero left padding,
- each causal transposed convolution's last input frame, whose overlapping outputs the next frame
  completes.
Work per frame is constant however long the reply grows.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from transformers.cache_utils import DynamicCache
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import (
        Qwen3OmniMoeCausalConvNet,
        Qwen3OmniMoeCausalTransConvNet,
        Qwen3OmniMoeCode2Wav,
        Qwen3OmniMoeCode2WavDecoderResidualUnit,
        Qwen3OmniMoeConvNeXtBlock,
    )

Stage = Callable[[torch.Tensor], torch.Tensor]


class CausalConvState:
    """A stride-1 causal convolution whose zero left padding is replaced by the inputs it saw last,
    kept in one preallocated buffer updated in place (a fixed address, as a captured graph needs)."""

    def __init__(self, layer: Qwen3OmniMoeCausalConvNet) -> None:
        if layer.stride != 1:
            raise ValueError(f"streaming needs stride 1, got {layer.stride}")
        self.layer = layer
        self.history: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        padding = self.layer.padding
        if padding == 0:
            return self.layer.conv(x)
        if self.history is None:
            self.history = x.new_zeros(*x.shape[:-1], padding)
        x = torch.cat([self.history, x], dim=-1)
        self.history.copy_(x[..., x.shape[-1] - padding :])
        return self.layer.conv(x)


class CausalTransConvState:
    """A causal transposed convolution that keeps the last inputs whose outputs the next frame completes
    (in place in one buffer once it holds `context_frames` frames)."""

    def __init__(self, layer: Qwen3OmniMoeCausalTransConvNet) -> None:
        stride = layer.conv.stride[0]
        if layer.left_pad != layer.right_pad or layer.left_pad % stride:
            raise ValueError(f"streaming needs equal trims that are a multiple of the stride {stride}")
        self.layer = layer
        self.context_frames = layer.left_pad // stride
        self.history: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.history is not None:
            x = torch.cat([self.history, x], dim=-1)
        if self.context_frames:
            tail = x[..., max(0, x.shape[-1] - self.context_frames) :]
            if self.history is None or self.history.shape != tail.shape:
                self.history = tail.clone()
            else:
                self.history.copy_(tail)
        return self.layer(x)


class ConvNeXtState:
    """`Qwen3OmniMoeConvNeXtBlock.forward` with a streaming depthwise convolution."""

    def __init__(self, block: Qwen3OmniMoeConvNeXtBlock) -> None:
        self.block = block
        self.dwconv = CausalConvState(block.dwconv)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        h = b.pwconv2(b.act(b.pwconv1(b.norm(self.dwconv(x).permute(0, 2, 1)))))
        return x + (b.gamma * h).permute(0, 2, 1)


class ResidualUnitState:
    """`Qwen3OmniMoeCode2WavDecoderResidualUnit.forward` with a streaming dilated convolution."""

    def __init__(self, unit: Qwen3OmniMoeCode2WavDecoderResidualUnit) -> None:
        self.unit = unit
        self.conv1 = CausalConvState(unit.conv1)
        self.conv2 = CausalConvState(unit.conv2)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        u = self.unit
        return self.conv2(u.act2(self.conv1(u.act1(x)))) + x


def streaming_stages(code2wav: Qwen3OmniMoeCode2Wav) -> list[Stage]:
    """The modules after the pre-transformer in forward order, stateful ones wrapped with fresh state."""
    from transformers.models.qwen3_omni_moe import modeling_qwen3_omni_moe as qo

    def wrap(module: torch.nn.Module) -> list[Stage]:
        if isinstance(module, qo.Qwen3OmniMoeCode2WavDecoderBlock):
            return [stage for sub in module.block for stage in wrap(sub)]
        if isinstance(module, qo.Qwen3OmniMoeCausalConvNet):
            return [CausalConvState(module)]
        if isinstance(module, qo.Qwen3OmniMoeCausalTransConvNet):
            return [CausalTransConvState(module)]
        if isinstance(module, qo.Qwen3OmniMoeConvNeXtBlock):
            return [ConvNeXtState(module)]
        if isinstance(module, qo.Qwen3OmniMoeCode2WavDecoderResidualUnit):
            return [ResidualUnitState(module)]
        if isinstance(module, qo.Qwen3OmniMoeSnakeBeta):
            return [module]
        raise TypeError(f"no streaming form for {type(module).__name__}")

    modules = [block for blocks in code2wav.upsample for block in blocks.children()] + list(code2wav.decoder)
    return [stage for module in modules for stage in wrap(module)]


class Code2WavStream:
    """One reply's incremental decode: `push` frames as the Talker makes them, `flush` at the end.

    Everything returned, concatenated, equals `code2wav(all_codes)[0, 0]` (float rounding aside).
    One frame is enough for the first audio; larger pushes later amortise the per-call overhead.
    """

    def __init__(self, code2wav: Qwen3OmniMoeCode2Wav) -> None:
        self.code2wav = code2wav
        self.num_quantizers: int = code2wav.config.num_quantizers
        self.samples_per_frame = int(code2wav.total_upsample)
        self.reset()

    def reset(self) -> None:
        """Drop all carried state: the next push starts a new reply at frame 0."""
        from transformers.cache_utils import DynamicCache

        self._cache: DynamicCache = DynamicCache(config=self.code2wav.config)
        self._stages = streaming_stages(self.code2wav)
        self._closed = False
        self.frames_pushed = 0
        self.samples_emitted = 0

    def __enter__(self) -> Code2WavStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.reset()

    @torch.inference_mode()
    def push(self, codes: torch.Tensor) -> np.ndarray:
        """Decode frames `codes` ((Q, n) or (1, Q, n)); return the samples they make final (float32)."""
        if self._closed:
            raise RuntimeError("push after flush: reset() starts a new reply")
        if codes.dim() == 2:
            codes = codes.unsqueeze(0)
        if codes.dim() != 3 or codes.shape[0] != 1 or codes.shape[1] != self.num_quantizers:
            raise ValueError(
                f"expected codes of shape (1, {self.num_quantizers}, n), got {tuple(codes.shape)}"
            )
        if codes.shape[-1] == 0:
            return np.zeros(0, dtype=np.float32)
        model = self.code2wav
        codes = codes.to(device=model.code_offset.device, dtype=torch.long)
        hidden = model.code_embedding(codes + model.code_offset).mean(1)
        hidden = model.pre_transformer(inputs_embeds=hidden, past_key_values=self._cache, use_cache=True)
        hidden = hidden.last_hidden_state.permute(0, 2, 1)
        for stage in self._stages:
            hidden = stage(hidden)
        wav = hidden.clamp(min=-1, max=1)[0, 0].float().cpu().numpy()
        self.frames_pushed += codes.shape[-1]
        self.samples_emitted += wav.shape[0]
        return wav

    def flush(self) -> np.ndarray:
        """Close the reply and return what only its end makes final.

        The one-shot forward drops the trailing samples that would need a further frame, and everything
        else is already final when pushed, so this is empty; callers still call it to end the reply.
        """
        self._closed = True
        return np.zeros(0, dtype=np.float32)
