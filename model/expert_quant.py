"""NF4 storage for Qwen3-Omni's fused MoE experts, one bitsandbytes 4-bit tensor per expert matrix.

transformers stores the experts of a sparse MoE block as two 3-D parameters (`gate_up_proj`
[E, 2I, H], `down_proj` [E, H, I]); bitsandbytes' `load_in_4bit` only replaces `nn.Linear`, so these
stay bf16 (bitsandbytes issue 1849). `Nf4Experts` replaces such a module: each expert matrix is
quantized with `bitsandbytes.functional.quantize_4bit` (NF4, blocks of 64, absmax double-quantized
in blocks of 256) and the forward runs `bitsandbytes.matmul_4bit` on the experts the router picked.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

NF4_BLOCKSIZE = 64
ABSMAX_BLOCKSIZE = 256
NF4_CODE_ENTRIES = 16
ABSMAX_CODE_ENTRIES = 256
FP32_BYTES = 4
EXPERT_MATRICES = ("gate_up_proj", "down_proj")

if TYPE_CHECKING:
    from bitsandbytes.functional import QuantState


@dataclass(frozen=True, slots=True)
class Nf4Layout:
    """Sizes of one matrix stored by `quantize_4bit(..., compress_statistics=True)`, in elements."""

    numel: int

    @property
    def packed_bytes(self) -> int:
        return (self.numel + 1) // 2

    @property
    def blocks(self) -> int:
        return math.ceil(self.numel / NF4_BLOCKSIZE)

    @property
    def absmax_blocks(self) -> int:
        return math.ceil(self.blocks / ABSMAX_BLOCKSIZE)

    @property
    def tensor_bytes(self) -> int:
        """Bytes that scale with the matrix: packed codes, 8-bit absmax, fp32 absmax of absmax, offset."""
        return self.packed_bytes + self.blocks + self.absmax_blocks * FP32_BYTES + FP32_BYTES


CODE_TABLE_BYTES = (NF4_CODE_ENTRIES + ABSMAX_CODE_ENTRIES) * FP32_BYTES
"""The NF4 code and the dynamic 8-bit absmax code, fp32, held once per quant state (or per `Nf4Experts`)."""


CPU_NF4_ROW_MULTIPLE = 64  # bitsandbytes' CPU kernels: row lengths (input widths) in whole NF4 blocks
CPU_NF4_OUT_MULTIPLE = 32  # ... and output widths (Linear4bit's AVX512-BF16 repacking)


def cpu_nf4_misfit(out_features: int, in_features: int) -> str | None:
    """Why bitsandbytes' CPU kernels cannot run a (out, in) matrix in NF4, or None when they can.
    Its CPU `dequantize_4bit` looks scales up row by row and its `Linear4bit` repacks for widths of
    whole blocks: other sizes quantize without complaint and then fail or compute wrong values."""
    if in_features % CPU_NF4_ROW_MULTIPLE:
        return f"rows of {in_features} values (not a multiple of {CPU_NF4_ROW_MULTIPLE})"
    if out_features % CPU_NF4_OUT_MULTIPLE:
        return f"{out_features} rows (not a multiple of {CPU_NF4_OUT_MULTIPLE})"
    return None


def nf4_bytes(numel: int) -> int:
    """Bytes bitsandbytes holds for one matrix quantized to NF4 with double quantization."""
    return Nf4Layout(numel).tensor_bytes + CODE_TABLE_BYTES


def quantize_nf4(weight: torch.Tensor) -> tuple[torch.Tensor, QuantState]:
    """Quantize one 2-D weight with bitsandbytes NF4 (blocks of 64, double-quantized absmax)."""
    import bitsandbytes.functional as bnbf

    return bnbf.quantize_4bit(
        weight, blocksize=NF4_BLOCKSIZE, compress_statistics=True, quant_type="nf4", quant_storage=torch.uint8
    )


class Nf4Experts(nn.Module):
    """Drop-in for `Qwen3OmniMoe{Thinker,Talker}TextExperts` with every expert matrix in NF4.

    Same forward signature `(hidden_states, top_k_index, top_k_weights)`, so the sparse MoE block calls
    it unchanged. Only experts present in `top_k_index` are computed: for one token (a decode step)
    in k fixed slots with static shapes (`forward_slots`), for several (a prefill) expert by expert.
    """

    nf4_code: torch.Tensor
    absmax_code: torch.Tensor

    def __init__(
        self,
        num_experts: int,
        hidden_dim: int,
        intermediate_dim: int,
        act_fn: Callable[[torch.Tensor], torch.Tensor],
        weight_dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.act_fn = act_fn
        self.weight_dtype = weight_dtype
        shapes = ((2 * intermediate_dim, hidden_dim), (hidden_dim, intermediate_dim))
        self.shapes = {name: torch.Size(shape) for name, shape in zip(EXPERT_MATRICES, shapes, strict=True)}
        for name, shape in self.shapes.items():
            layout = Nf4Layout(shape.numel())
            self.register_buffer(
                f"{name}_packed",
                torch.zeros(num_experts, layout.packed_bytes, dtype=torch.uint8, device=device),
            )
            self.register_buffer(
                f"{name}_absmax", torch.zeros(num_experts, layout.blocks, dtype=torch.uint8, device=device)
            )
            self.register_buffer(
                f"{name}_absmax2",
                torch.zeros(num_experts, layout.absmax_blocks, dtype=torch.float32, device=device),
            )
            self.register_buffer(
                f"{name}_offset", torch.zeros(num_experts, dtype=torch.float32, device=device)
            )
        self.register_buffer("nf4_code", torch.zeros(NF4_CODE_ENTRIES, dtype=torch.float32, device=device))
        self.register_buffer(
            "absmax_code", torch.zeros(ABSMAX_CODE_ENTRIES, dtype=torch.float32, device=device)
        )
        self._loaded: set[tuple[str, int]] = set()

    @classmethod
    def like(cls, experts: nn.Module, weight_dtype: torch.dtype, device: torch.device | str) -> Nf4Experts:
        """An empty `Nf4Experts` with the sizes and activation of a transformers Experts module."""
        sizes: Any = experts
        return cls(
            num_experts=int(sizes.num_experts),
            hidden_dim=int(sizes.hidden_dim),
            intermediate_dim=int(sizes.intermediate_dim),
            act_fn=sizes.act_fn,
            weight_dtype=weight_dtype,
            device=device,
        )

    @property
    def complete(self) -> bool:
        """Whether every expert matrix has been stored."""
        return len(self._loaded) == len(self.shapes) * self.num_experts

    @torch.no_grad()
    def store_(self, name: str, expert: int, weight: torch.Tensor) -> None:
        """Quantize `weight` (the [out, in] matrix of one expert) into slot `name`[expert]."""
        if weight.shape != self.shapes[name]:
            raise ValueError(
                f"{name}[{expert}]: expected shape {tuple(self.shapes[name])}, got {tuple(weight.shape)}"
            )
        packed_buf: torch.Tensor = getattr(self, f"{name}_packed")
        weight = weight.to(device=packed_buf.device, dtype=self.weight_dtype)
        packed, state = quantize_nf4(weight)
        packed_buf[expert].copy_(packed.view(-1))
        nested: Any = state.state2
        getattr(self, f"{name}_absmax")[expert].copy_(state.absmax)
        getattr(self, f"{name}_absmax2")[expert].copy_(nested.absmax)
        getattr(self, f"{name}_offset")[expert].copy_(state.offset)
        self.nf4_code.copy_(state.code)
        self.absmax_code.copy_(nested.code)
        self._loaded.add((name, expert))

    def quant_state(self, name: str, expert: int) -> QuantState:
        """The bitsandbytes `QuantState` of one expert matrix, viewing this module's buffers."""
        from bitsandbytes.functional import QuantState

        state2 = QuantState(
            absmax=getattr(self, f"{name}_absmax2")[expert],
            code=self.absmax_code,
            blocksize=ABSMAX_BLOCKSIZE,
            dtype=torch.float32,
        )
        return QuantState(
            absmax=getattr(self, f"{name}_absmax")[expert],
            shape=self.shapes[name],
            code=self.nf4_code,
            blocksize=NF4_BLOCKSIZE,
            quant_type="nf4",
            dtype=self.weight_dtype,
            offset=getattr(self, f"{name}_offset")[expert],
            state2=state2,
        )

    def dequantize(self, name: str, expert: int) -> torch.Tensor:
        """One expert matrix back in `weight_dtype` (for tests and debugging)."""
        import bitsandbytes.functional as bnbf

        packed = getattr(self, f"{name}_packed")[expert].view(-1, 1)
        return bnbf.dequantize_4bit(packed, self.quant_state(name, expert))

    def expert_linear(self, x: torch.Tensor, name: str, expert: int) -> torch.Tensor:
        """`x @ W[expert].T` with the 4-bit matrix, without materializing any other expert."""
        import bitsandbytes as bnb

        packed = getattr(self, f"{name}_packed")[expert].view(-1, 1)
        return bnb.matmul_4bit(x, packed.t(), quant_state=self.quant_state(name, expert))

    def forward(
        self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
    ) -> torch.Tensor:
        if hidden_states.shape[0] == 1:
            return self.forward_slots(hidden_states, top_k_index, top_k_weights)
        return self.forward_picked(hidden_states, top_k_index, top_k_weights)

    def slot_weights(self, name: str, slots: torch.Tensor) -> torch.Tensor:
        """The matrices `name` of experts `slots` (k,), gathered and dequantized in one call: (k, out, in).

        The double-quantized absmax is expanded here (code lookup, times the per-256-block scale, plus
        the expert's offset: `dequantize_blockwise` then `+= offset`, as bitsandbytes does per matrix),
        so that the packed codes of the k experts form one 4-bit tensor with one fp32 absmax.
        """
        shape = self.shapes[name]
        layout = Nf4Layout(shape.numel())
        packed = getattr(self, f"{name}_packed")[slots]
        absmax = self.absmax_code[getattr(self, f"{name}_absmax")[slots].long()]
        groups = torch.arange(layout.blocks, device=slots.device) // ABSMAX_BLOCKSIZE
        absmax = absmax * getattr(self, f"{name}_absmax2")[slots][:, groups]
        absmax = absmax + getattr(self, f"{name}_offset")[slots].unsqueeze(1)
        k = int(slots.shape[0])
        weights = torch.ops.bitsandbytes.dequantize_4bit(
            packed.view(-1, 1),
            absmax.view(-1),
            NF4_BLOCKSIZE,
            "nf4",
            [k * shape[0], shape[1]],
            self.weight_dtype,
        )
        return weights.view(k, *shape)

    def forward_slots(
        self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
    ) -> torch.Tensor:
        """One token: its top-k experts' weights gathered into k fixed slots and computed with two
        batched matmuls. Shapes do not depend on which experts the router picked, nothing is read back."""
        slots = top_k_index.view(-1)
        x = hidden_states.to(self.weight_dtype).view(1, -1, 1).expand(slots.shape[0], -1, 1)
        gate, up = torch.bmm(self.slot_weights("gate_up_proj", slots), x).squeeze(-1).chunk(2, dim=-1)
        h = (self.act_fn(gate) * up).unsqueeze(-1)
        out = torch.bmm(self.slot_weights("down_proj", slots), h).squeeze(-1)
        out = out * top_k_weights.view(-1, 1).to(out.dtype)
        return out.sum(0, keepdim=True).to(hidden_states.dtype)

    def forward_picked(
        self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
    ) -> torch.Tensor:
        """Several tokens (a prefill): each expert the router picked once, with `matmul_4bit`."""
        final_hidden_states = torch.zeros_like(hidden_states)
        for expert in torch.unique(top_k_index).tolist():
            if expert >= self.num_experts:
                continue
            token_idx, top_k_pos = torch.where(top_k_index == expert)
            gate, up = self.expert_linear(hidden_states[token_idx], "gate_up_proj", expert).chunk(2, dim=-1)
            current = self.expert_linear(self.act_fn(gate) * up, "down_proj", expert)
            current = current * top_k_weights[token_idx, top_k_pos, None]
            final_hidden_states.index_add_(0, token_idx, current.to(final_hidden_states.dtype))
        return final_hidden_states

    def extra_repr(self) -> str:
        return (
            f"num_experts={self.num_experts}, hidden_dim={self.hidden_dim}, "
            f"intermediate_dim={self.intermediate_dim}, nf4"
        )
