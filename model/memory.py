"""Weight bytes of Qwen3-Omni per part and quantization mode, from a config built on the meta device.

4-bit tensors are counted as bitsandbytes stores them (`model.expert_quant.nf4_bytes`: packed codes,
8-bit absmax per 64 values, fp32 absmax per 256 blocks, offset, code tables); everything else at the
load dtype. Buffers (rotary tables) are not weights and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from model.expert_quant import CODE_TABLE_BYTES, EXPERT_MATRICES, Nf4Layout, nf4_bytes
from model.quantize import Mode, quantization_plan

GIB = 1024**3
PARTS: tuple[tuple[str, str], ...] = (
    ("thinker_experts", "thinker.model.language_model.layers.*.mlp.experts"),
    ("embeddings_heads", "thinker.model.language_model.embed_tokens, thinker.lm_head"),
    ("thinker_dense", "thinker.model.language_model (attention, routers, norms)"),
    ("audio_encoder", "thinker.model.audio_tower"),
    ("vision_encoder", "thinker.model.visual"),
    ("code_predictor", "talker.code_predictor"),
    ("talker", "talker (experts, attention, shared experts, embeddings, codec head, projections)"),
    ("code2wav", "code2wav"),
)


def part_of(parameter_path: str) -> str:
    """The accounting part a parameter belongs to (see `PARTS`)."""
    if parameter_path.startswith("thinker.model.language_model."):
        if ".mlp.experts." in parameter_path:
            return "thinker_experts"
        if ".embed_tokens." in parameter_path:
            return "embeddings_heads"
        return "thinker_dense"
    prefixes = {
        "thinker.lm_head.": "embeddings_heads",
        "thinker.model.audio_tower.": "audio_encoder",
        "thinker.model.visual.": "vision_encoder",
        "talker.code_predictor.": "code_predictor",
        "talker.": "talker",
        "code2wav.": "code2wav",
    }
    for prefix, part in prefixes.items():
        if parameter_path.startswith(prefix):
            return part
    raise ValueError(f"parameter {parameter_path} belongs to no known part")


@dataclass(frozen=True, slots=True)
class MemoryReport:
    """Bytes of weights per part for one mode."""

    mode: str
    parameters: int
    bytes_by_part: dict[str, int]

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_by_part.values())


def build_meta_model(config: Any) -> nn.Module:
    """`Qwen3OmniMoeForConditionalGeneration` on the meta device: shapes only, no memory."""
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import (
        Qwen3OmniMoeForConditionalGeneration,
    )

    with torch.device("meta"):
        return Qwen3OmniMoeForConditionalGeneration(config)


def memory_report(model: nn.Module, mode: Mode, dtype: torch.dtype = torch.bfloat16) -> MemoryReport:
    """Weight bytes per part of `model` (any device, meta included) once quantized by `mode`."""
    element_bytes = torch.empty(0, dtype=dtype).element_size()
    plan = quantization_plan(model, mode)
    quantized: dict[str, int] = {}
    for path in plan.experts:
        experts = model.get_submodule(path)
        count = sum(_per_expert_bytes(getattr(experts, name)) for name in EXPERT_MATRICES)
        quantized[f"{path}.gate_up_proj"] = count + CODE_TABLE_BYTES
        quantized[f"{path}.down_proj"] = 0
    for path in plan.linears:
        linear: Any = model.get_submodule(path)
        quantized[f"{path}.weight"] = nf4_bytes(linear.weight.numel())
    by_part = dict.fromkeys((part for part, _ in PARTS), 0)
    parameters = 0
    for path, param in model.named_parameters():
        parameters += param.numel()
        size = quantized.get(path, param.numel() * element_bytes)
        by_part[part_of(path)] += size
    return MemoryReport(
        mode=mode, parameters=parameters, bytes_by_part={k: v for k, v in by_part.items() if v}
    )


def _per_expert_bytes(fused: torch.Tensor) -> int:
    """NF4 bytes of a fused [E, out, in] expert tensor stored one expert matrix at a time, no code tables."""
    return fused.shape[0] * Nf4Layout(fused[0].numel()).tensor_bytes
