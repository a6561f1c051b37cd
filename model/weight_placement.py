"""A model built on the meta device and weights put into it one tensor at a time: a tensor
materialized on its device, a parameter, buffer or submodule replaced in place, the buffers moved,
and what the weights take as stored. Quantizing and loading (`quantize.py`) work through these."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def materialize(
    tensor: torch.Tensor, device: torch.device, dtype: torch.dtype, init_std: float | None
) -> torch.Tensor:
    """Parameter `tensor` on `device` in `dtype` (if floating); from meta, N(0, init_std) if allowed."""
    target_dtype = dtype if tensor.is_floating_point() else tensor.dtype
    if tensor.device.type != "meta":
        return tensor.detach().to(device=device, dtype=target_dtype)
    if init_std is None:
        raise ValueError("meta parameter without a value: pass init_std to fill weights with random values")
    return torch.empty(tensor.shape, device=device, dtype=target_dtype).normal_(0.0, init_std)


def set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, leaf, module)


def set_tensor(model: nn.Module, path: str, value: torch.Tensor) -> None:
    """Replace parameter or buffer `path` by `value` (parameters stay parameters, frozen)."""
    module_path, _, leaf = path.rpartition(".")
    module = model.get_submodule(module_path) if module_path else model
    if leaf in module._parameters:
        module._parameters[leaf] = nn.Parameter(value, requires_grad=False)
    elif leaf in module._buffers:
        module._buffers[leaf] = value
    else:
        raise KeyError(f"{path} is neither a parameter nor a buffer")


def move_buffers_(model: nn.Module, device: torch.device) -> None:
    """Buffers (rotary frequencies, positional tables) keep their dtype; a meta buffer is an error."""
    for path, buffer in list(model.named_buffers()):
        if buffer.device.type == "meta":
            raise ValueError(f"buffer {path} is on the meta device: build the model with `build_empty`")
        if buffer.device != device:
            set_tensor(model, path, buffer.to(device))


def weight_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer as stored (4-bit tensors count their packed bytes and states)."""
    total = sum(t.numel() * t.element_size() for t in model.parameters())
    total += sum(t.numel() * t.element_size() for t in model.buffers())
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if state is not None:
            total += sum(
                v.numel() * v.element_size()
                for v in state.as_dict(packed=False).values()
                if torch.is_tensor(v)
            )
    return total


def build_empty(config: Any, dtype: torch.dtype) -> nn.Module:
    """`Qwen3OmniMoeForConditionalGeneration` with parameters on the meta device and real buffers.

    Buffers (rotary frequencies, sinusoid tables, code offsets) are computed in `__init__` and are
    not in checkpoints, so they are built for real, in `dtype` as `from_pretrained` would.
    """
    from accelerate import init_empty_weights
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import (
        Qwen3OmniMoeForConditionalGeneration,
    )

    with init_empty_weights(include_buffers=False):
        model = Qwen3OmniMoeForConditionalGeneration._from_config(config, dtype=dtype)
    return model.eval()
