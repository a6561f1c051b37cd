"""4-bit Qwen3-Omni: which weights go to NF4, and loading a checkpoint straight into that form.

Mode `nf4` stores in bitsandbytes NF4 (blocks of 64, double-quantized absmax):
- the fused MoE experts of the Thinker and the Talker text models (`Nf4Experts`, per expert matrix);
- every `nn.Linear` inside their decoder layers: attention q/k/v/o, dense MLPs, the Talker's shared
  expert (`bitsandbytes.nn.Linear4bit`).
Together these are 94 % of Qwen3-Omni-30B-A3B's parameters. Kept in the load dtype (bf16 on CUDA):
- routers (`mlp.gate`, `shared_expert_gate`): tiny, and a routing flip changes which expert runs at all;
- token embeddings and lm/codec heads: a lookup table and the logits every token is sampled from;
- the audio and vision encoders: run once per turn over the whole input, their errors feed every token;
- the Talker's text/hidden projections, code predictor (MTP) and Code2Wav: small (0.37 B together) and
  directly on the path to the waveform, where 4-bit noise is heard as artifacts.
On the CPU, a matrix whose sizes bitsandbytes' CPU kernels cannot run (`cpu_nf4_misfit`: the real
checkpoint has none, small test models may) stays in the load dtype too, named in the report's notes.
Mode `none` keeps everything in the load dtype. An `int8` mode for the dense layers was left out: they
are 3 % of the weights, so int8 instead of NF4 would cost about 0.5 GB for no measured gain.
"""

from __future__ import annotations

import logging
import re
import resource
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from model.expert_quant import EXPERT_MATRICES, NF4_BLOCKSIZE, Nf4Experts, cpu_nf4_misfit, quantize_nf4
from model.weight_placement import (
    build_empty,
    materialize,
    move_buffers_,
    set_module,
    set_tensor,
    weight_bytes,
)

Mode = Literal["nf4", "none"]
MODES: tuple[Mode, ...] = ("nf4", "none")
KEPT_LINEARS = frozenset({"shared_expert_gate"})
"""`nn.Linear` leaves inside decoder layers that stay unquantized: the Talker's shared-expert router."""
log = logging.getLogger(__name__)
_PER_EXPERT_KEY = re.compile(r"\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")


@dataclass(frozen=True, slots=True)
class QuantPlan:
    """Module paths to quantize, found by structure: fused experts and linears of the text decoders."""

    experts: tuple[str, ...]
    linears: tuple[str, ...]
    kept: tuple[str, ...] = ()  # what the device's kernels cannot run in NF4, each with why


@dataclass(slots=True)
class QuantReport:
    """What a quantization or load did, and what it cost."""

    mode: str
    device: str
    quantized_experts: int = 0
    quantized_linears: int = 0
    weight_bytes: int = 0
    tensors_loaded: int = 0
    start_rss_bytes: int = 0
    peak_rss_bytes: int = 0
    ru_maxrss_bytes: int = 0
    notes: list[str] = field(default_factory=list)


def is_fused_experts(module: nn.Module) -> bool:
    """transformers' fused experts: 3-D `gate_up_proj` [E, 2I, H] and `down_proj` [E, H, I] parameters."""
    return all(isinstance(getattr(module, n, None), torch.Tensor) for n in EXPERT_MATRICES) and all(
        getattr(module, n).dim() == 3 for n in EXPERT_MATRICES
    )


def _text_decoders(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """The Thinker and Talker text decoder stacks (the modules holding `.layers` of MoE decoder layers)."""
    for name, module in model.named_modules():
        layers = getattr(module, "layers", None)
        if isinstance(layers, nn.ModuleList) and any(
            is_fused_experts(m) or isinstance(m, Nf4Experts) for m in module.modules()
        ):
            yield name, module


def quantization_plan(model: nn.Module, mode: Mode, device: torch.device | str | None = None) -> QuantPlan:
    """What `mode` quantizes in `model` on `device`; the one definition used by loading and by
    memory accounting. On the CPU, matrices its 4-bit kernels cannot run are kept (`plan.kept`)."""
    if mode not in MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; expected one of {MODES}")
    if mode == "none":
        return QuantPlan((), ())
    on_cpu = device is not None and torch.device(device).type == "cpu"
    experts: list[str] = []
    linears: list[str] = []
    kept: list[str] = []
    for decoder_name, decoder in _text_decoders(model):
        prefix = f"{decoder_name}.layers." if decoder_name else "layers."
        for name, module in decoder.layers.named_modules():  # type: ignore[union-attr]
            if is_fused_experts(module):
                shapes = [tuple(getattr(module, m).shape[1:]) for m in EXPERT_MATRICES]
            elif isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] not in KEPT_LINEARS:
                shapes = [(module.out_features, module.in_features)]
            else:
                continue
            misfit = (
                next(filter(None, (cpu_nf4_misfit(*shape) for shape in shapes)), None) if on_cpu else None
            )
            if misfit is not None:
                kept.append(f"{prefix + name}: {misfit}")
            else:
                (experts if is_fused_experts(module) else linears).append(prefix + name)
    return QuantPlan(tuple(experts), tuple(linears), tuple(kept))


def _note_kept(plan: QuantPlan, report: QuantReport) -> None:
    for entry in plan.kept:
        report.notes.append(
            f"kept unquantized on the CPU, bitsandbytes' CPU kernels need whole blocks: {entry}"
        )
        log.warning("nf4: %s", report.notes[-1])


def _quantized_linear(linear: nn.Linear, weight: torch.Tensor, device: torch.device) -> nn.Module:
    """A bitsandbytes `Linear4bit` holding `weight` in NF4 on `device`."""
    import bitsandbytes as bnb

    qlinear = bnb.nn.Linear4bit(
        linear.in_features,
        linear.out_features,
        bias=linear.bias is not None,
        compute_dtype=weight.dtype,
        compress_statistics=True,
        quant_type="nf4",
        device="meta",
    )
    packed, state = quantize_nf4(weight.to(device))
    qlinear.weight = bnb.nn.Params4bit(
        packed,
        requires_grad=False,
        quant_state=state,
        blocksize=NF4_BLOCKSIZE,
        compress_statistics=True,
        quant_type="nf4",
        module=qlinear,
        bnb_quantized=True,
    )
    if linear.bias is not None:
        qlinear.bias = nn.Parameter(linear.bias.detach().to(device, weight.dtype), requires_grad=False)
    return qlinear


class _RssSampler:
    """Peak resident set size seen at the sample points (psutil), plus the process-wide ru_maxrss."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.start = self.peak = self._process.memory_info().rss

    def sample(self) -> None:
        self.peak = max(self.peak, self._process.memory_info().rss)

    def fill(self, report: QuantReport) -> None:
        self.sample()
        report.start_rss_bytes = self.start
        report.peak_rss_bytes = self.peak
        scale = 1 if sys.platform == "darwin" else 1024
        report.ru_maxrss_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


@torch.no_grad()
def quantize_model_(
    model: nn.Module,
    mode: Mode,
    device: torch.device | str,
    dtype: torch.dtype | None = None,
    *,
    init_std: float | None = None,
) -> QuantReport:
    """Quantize `model` in place by `mode` and move it to `device`, one tensor at a time.

    The model may live on the CPU or, built by `build_empty`, on the meta device: with `init_std` set,
    meta weights are drawn as N(0, init_std) on `device` (to time a real-size model without its
    checkpoint). Peak device memory is the quantized model plus one bf16 matrix.
    """
    device = torch.device(device)
    dtype = dtype or next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    report = QuantReport(mode=mode, device=str(device))
    sampler = _RssSampler()
    plan = quantization_plan(model, mode, device)
    _note_kept(plan, report)
    for path in plan.experts:
        dense = model.get_submodule(path)
        nf4 = Nf4Experts.like(dense, dtype, device)
        for name in EXPERT_MATRICES:
            fused = getattr(dense, name)
            for expert in range(nf4.num_experts):
                nf4.store_(name, expert, materialize(fused[expert], device, dtype, init_std))
            delattr(dense, name)
            sampler.sample()
        set_module(model, path, nf4)
        report.quantized_experts += 1
    for path in plan.linears:
        linear = model.get_submodule(path)
        assert isinstance(linear, nn.Linear)
        weight = materialize(linear.weight, device, dtype, init_std)
        if linear.bias is not None:
            linear.bias = nn.Parameter(materialize(linear.bias, device, dtype, 0.0), requires_grad=False)
        set_module(model, path, _quantized_linear(linear, weight, device))
        report.quantized_linears += 1
        sampler.sample()
    for path, param in list(model.named_parameters()):
        if param.device != device or (param.is_floating_point() and param.dtype != dtype):
            set_tensor(model, path, materialize(param, device, dtype, init_std))
            report.tensors_loaded += 1
    move_buffers_(model, device)
    model.eval()
    report.weight_bytes = weight_bytes(model)
    sampler.fill(report)
    return report


def _conversion_rules(model: nn.Module) -> tuple[list[Any], list[Any]]:
    """transformers' checkpoint-to-module key renamings and converters (per-expert keys, prefixes)."""
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter

    transforms = get_model_conversion_mapping(model)  # type: ignore[arg-type]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    renamings = [t for t in transforms if not isinstance(t, WeightConverter)]
    return renamings, converters


@dataclass
class _ExpertAssembler:
    """Puts expert matrices where they belong as checkpoint keys arrive (per-expert or fused keys).

    Into `Nf4Experts` each matrix is quantized on arrival, gate and up halves waiting for each other;
    into dense transformers Experts (mode `none`) they are copied into the fused 3-D parameters.
    """

    model: nn.Module
    device: torch.device
    dtype: torch.dtype
    pending: dict[tuple[str, int], dict[str, torch.Tensor]] = field(default_factory=dict)

    def add(self, module_path: str, leaf: str, key: str, tensor: torch.Tensor) -> None:
        experts: Any = self.model.get_submodule(module_path)
        match = _PER_EXPERT_KEY.search(key)
        if not isinstance(experts, Nf4Experts):
            self._add_dense(experts, module_path, leaf, match, tensor)
        elif match is None:
            for expert in range(experts.num_experts):
                experts.store_(leaf, expert, tensor[expert])
        elif match[2] == "down_proj":
            experts.store_("down_proj", int(match[1]), tensor)
        else:
            slot = (module_path, int(match[1]))
            halves = self.pending.setdefault(slot, {})
            halves[match[2]] = tensor
            if len(halves) == 2:
                experts.store_("gate_up_proj", slot[1], torch.cat((halves["gate_proj"], halves["up_proj"])))
                del self.pending[slot]

    def _add_dense(
        self, experts: Any, module_path: str, leaf: str, match: re.Match[str] | None, tensor: torch.Tensor
    ) -> None:
        if match is None:
            value = materialize(tensor, self.device, self.dtype, None)
            set_tensor(self.model, f"{module_path}.{leaf}", value)
            return
        name = "down_proj" if match[2] == "down_proj" else "gate_up_proj"
        fused = getattr(experts, name)
        if fused.device.type == "meta":
            fused = torch.empty(fused.shape, device=self.device, dtype=self.dtype)
            set_tensor(self.model, f"{module_path}.{name}", fused)
            fused = getattr(experts, name)
        half = experts.intermediate_dim
        rows = {"gate_proj": slice(0, half), "up_proj": slice(half, None)}
        fused[int(match[1]), rows.get(match[2], slice(None))].copy_(tensor)


@torch.no_grad()
def load_quantized(
    path: str | Path, mode: Mode, device: torch.device | str, dtype: torch.dtype = torch.bfloat16
) -> tuple[nn.Module, QuantReport]:
    """Load a `save_pretrained` Qwen3-Omni checkpoint (safetensors) quantized by `mode` onto `device`.

    The model is built on the meta device; each checkpoint tensor is read (memory-mapped), cast,
    quantized if the plan says so and put on `device`, so neither host nor device ever holds the
    whole bf16 model. Returns the model (eval mode) and a report with the peak host RSS.
    """
    from safetensors import safe_open
    from transformers.core_model_loading import rename_source_key
    from transformers.models.qwen3_omni_moe.configuration_qwen3_omni_moe import Qwen3OmniMoeConfig

    device = torch.device(device)
    report = QuantReport(mode=mode, device=str(device))
    sampler = _RssSampler()
    model = build_empty(Qwen3OmniMoeConfig.from_pretrained(path), dtype)
    renamings, converters = _conversion_rules(model)
    meta_state = model.state_dict()
    prefix: str | None = getattr(model, "base_model_prefix", None)
    plan = quantization_plan(model, mode, device)
    _note_kept(plan, report)
    expert_paths = {name for name, m in model.named_modules() if is_fused_experts(m)}
    linear_paths = set(plan.linears)
    for expert_path in plan.experts:
        set_module(model, expert_path, Nf4Experts.like(model.get_submodule(expert_path), dtype, device))
    assembler = _ExpertAssembler(model, device, dtype)
    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no safetensors files in {path}")
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as reader:
            for key in reader.keys():  # noqa: SIM118
                target, _ = rename_source_key(key, renamings, converters, prefix, meta_state)
                if target not in meta_state:
                    report.notes.append(f"unexpected checkpoint key {key}")
                    continue
                tensor = reader.get_tensor(key)
                module_path, _, leaf = target.rpartition(".")
                if module_path in expert_paths:
                    assembler.add(module_path, leaf, key, tensor)
                elif module_path in linear_paths and leaf == "weight":
                    linear = model.get_submodule(module_path)
                    assert isinstance(linear, nn.Linear)
                    set_module(
                        model, module_path, _quantized_linear(linear, tensor.to(device, dtype), device)
                    )
                    report.quantized_linears += 1
                else:
                    set_tensor(model, target, materialize(tensor, device, dtype, None))
                report.tensors_loaded += 1
                del tensor
                sampler.sample()
    getattr(model, "tie_weights")()  # noqa: B009
    _check_complete(model, assembler)
    report.quantized_experts = len(plan.experts)
    move_buffers_(model, device)
    model.eval()
    report.weight_bytes = weight_bytes(model)
    sampler.fill(report)
    return model, report


def _check_complete(model: nn.Module, assembler: _ExpertAssembler) -> None:
    missing = [name for name, p in model.named_parameters() if p.device.type == "meta"]
    missing += [name for name, m in model.named_modules() if isinstance(m, Nf4Experts) and not m.complete]
    missing += [f"{path}[{expert}] gate/up half" for path, expert in assembler.pending]
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} weights, e.g. {missing[:5]}")
