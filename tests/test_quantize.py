"""NF4 quantization of the demo model: storage, closeness to the float model, routing, loading paths.

Closeness criterion: on a fixed 48-token prompt, the relative error ||L_q - L|| / ||L|| of the
Thinker's logits stays below 0.25 (nf4 measures about 0.16 on the demo model), and every 4-bit
matrix dequantizes to within 0.12 relative error of its float weight (NF4 on Gaussian weights gives
about 0.1). A quantizer that packs the two 4-bit codes of a byte in the wrong order fails both, which
`test_broken_quantizer_fails_the_criterion` shows.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import model.expert_quant as expert_quant
import model.quantize as quantize
from model.expert_quant import EXPERT_MATRICES, NF4_BLOCKSIZE, Nf4Experts, nf4_bytes
from model.quantize import build_empty, load_quantized, quantization_plan, quantize_model_

LOGITS_REL_ERROR_MAX = 0.25
WEIGHT_REL_ERROR_MAX = 0.12
PROMPT_TOKENS = 48


def build_checkpoint(directory: Path) -> Path:
    """The checkpoint under test: the project's demo model (a tiny random Qwen3-Omni with a talker)."""
    from model.demo import build_demo_checkpoint

    return build_demo_checkpoint(directory)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def reference(checkpoint: Path) -> nn.Module:
    from transformers import Qwen3OmniMoeForConditionalGeneration

    return Qwen3OmniMoeForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def quantized(checkpoint: Path) -> tuple[nn.Module, quantize.QuantReport]:
    return load_quantized(checkpoint, "nf4", "cpu", torch.float32)


@pytest.fixture(scope="module")
def prompt() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 151_000, (1, PROMPT_TOKENS), generator=generator)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.float() - expected.float()).norm() / expected.float().norm())


@torch.no_grad()
def thinker_logits(model: nn.Module, prompt: torch.Tensor) -> torch.Tensor:
    return model.thinker(input_ids=prompt).logits  # type: ignore[union-attr, operator]


@torch.no_grad()
def weight_errors(reference: nn.Module, quantized: nn.Module) -> dict[str, float]:
    """Relative error of every 4-bit matrix, dequantized, against its float weight.

    Linears are compared with the checkpoint's weights; expert matrices are redrawn as N(0, 1)
    and stored again, so the check does not depend on the demo's initialisation scale.
    Only rows of a multiple of 64 values are checked: bitsandbytes 0.50's CPU (AVX512) dequantize and
    gemm kernels lose accuracy on shorter rows (0.18 instead of 0.09 on a 64 x 32 matrix), while its
    generic kernel does not; every matrix of the real model has such rows.
    """
    import bitsandbytes.functional as bnbf

    generator = torch.Generator().manual_seed(1)
    plan = quantization_plan(reference, "nf4")
    errors = {}
    for path in plan.linears:
        original: Any = reference.get_submodule(path)
        if original.weight.shape[-1] % NF4_BLOCKSIZE:
            continue
        weight: Any = quantized.get_submodule(path).weight
        data, state = weight.data, weight.quant_state
        if getattr(state, "packing_format_for_cpu", False):  # repacked by bitsandbytes' AVX512-bf16 path
            data, state = bnbf._convert_weight_packed_for_cpu_inverse(data.clone(), copy.deepcopy(state))
        restored = bnbf.dequantize_4bit(data, state)
        errors[path] = relative_error(restored, original.weight)
    for path in plan.experts:
        dense: Any = reference.get_submodule(path)
        nf4 = Nf4Experts.like(dense, torch.float32, "cpu")
        for name in EXPERT_MATRICES:
            fused = torch.randn(getattr(dense, name).shape, generator=generator)
            if fused.shape[-1] % NF4_BLOCKSIZE:
                continue
            for expert in range(dense.num_experts):
                nf4.store_(name, expert, fused[expert])
                errors[f"{path}.{name}[{expert}]"] = relative_error(
                    nf4.dequantize(name, expert), fused[expert]
                )
    assert errors
    return errors


def test_every_expert_and_targeted_linear_is_stored_in_4_bits(
    reference: nn.Module, quantized: tuple[nn.Module, quantize.QuantReport]
) -> None:
    model, report = quantized
    plan = quantization_plan(reference, "nf4")
    assert report.quantized_experts == len(plan.experts) > 0
    assert report.quantized_linears == len(plan.linears) > 0
    for path in plan.experts:
        dense: Any = reference.get_submodule(path)
        stored = model.get_submodule(path)
        tensors = list(stored.buffers()) + list(stored.parameters())
        assert not any(t.is_floating_point() and t.dim() == 3 for t in tensors)
        packed = [t for t in tensors if t.dtype == torch.uint8]
        per_expert = sum(m[0].numel() for m in (dense.gate_up_proj, dense.down_proj))
        expected = dense.num_experts * per_expert // 2 + dense.num_experts * per_expert // 64
        assert sum(t.numel() for t in packed) == expected
    for path in plan.linears:
        weight: Any = model.get_submodule(path).weight
        original: Any = reference.get_submodule(path)
        numel = original.weight.numel()
        assert weight.dtype == torch.uint8 and weight.numel() == numel // 2
        state = weight.quant_state
        tensors = [weight, state.absmax, state.code, state.offset, state.state2.absmax, state.state2.code]
        assert sum(t.numel() * t.element_size() for t in tensors) == nf4_bytes(numel)


def test_only_routers_stay_floating_in_the_text_decoders(
    quantized: tuple[nn.Module, quantize.QuantReport],
) -> None:
    model: Any = quantized[0]
    for stack in (model.thinker.model.language_model, model.talker.model):
        for name, param in stack.layers.named_parameters():
            if param.is_floating_point() and param.dim() >= 2:
                assert name.endswith(("mlp.gate.weight", "shared_expert_gate.weight")), name


def test_quantized_model_stays_close(
    reference: nn.Module, quantized: tuple[nn.Module, quantize.QuantReport], prompt: torch.Tensor
) -> None:
    model: Any = quantized[0]
    logits = thinker_logits(model, prompt)
    assert type(model.thinker(input_ids=prompt)) is type(reference.thinker(input_ids=prompt))  # type: ignore[operator]
    assert model.thinker.dtype == torch.float32  # type: ignore[union-attr]
    assert relative_error(logits, thinker_logits(reference, prompt)) < LOGITS_REL_ERROR_MAX
    assert max(weight_errors(reference, model).values()) < WEIGHT_REL_ERROR_MAX


def test_broken_quantizer_fails_the_criterion(
    checkpoint: Path, reference: nn.Module, prompt: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    honest: Callable[[torch.Tensor], Any] = expert_quant.quantize_nf4

    def swapped_nibbles(weight: torch.Tensor) -> Any:
        packed, state = honest(weight)
        return (packed << 4) | (packed >> 4), state

    monkeypatch.setattr(expert_quant, "quantize_nf4", swapped_nibbles)
    monkeypatch.setattr(quantize, "quantize_nf4", swapped_nibbles)
    broken, _ = load_quantized(checkpoint, "nf4", "cpu", torch.float32)
    assert (
        relative_error(thinker_logits(broken, prompt), thinker_logits(reference, prompt))
        > LOGITS_REL_ERROR_MAX
    )
    assert min(weight_errors(reference, broken).values()) > WEIGHT_REL_ERROR_MAX


def test_moe_forward_computes_only_the_picked_experts(
    quantized: tuple[nn.Module, quantize.QuantReport], prompt: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bitsandbytes
    import bitsandbytes.functional

    model, _ = quantized
    block: Any = model.thinker.model.language_model.layers[0].mlp  # type: ignore[union-attr, index]
    experts: Nf4Experts = block.experts
    picked: list[torch.Tensor] = []
    block.gate.register_forward_hook(lambda _m, _i, out: picked.append(out[2]))
    computed: list[int] = []
    matmul_shapes: list[tuple[int, ...]] = []
    dequantized: list[int] = []
    original_linear, original_matmul = Nf4Experts.expert_linear, bitsandbytes.matmul_4bit
    original_dequantize = bitsandbytes.functional.dequantize_4bit

    def counting_linear(self: Nf4Experts, x: torch.Tensor, name: str, expert: int) -> torch.Tensor:
        computed.append(expert)
        return original_linear(self, x, name, expert)

    def counting_matmul(a: torch.Tensor, b: torch.Tensor, quant_state: Any, **kwargs: Any) -> torch.Tensor:
        matmul_shapes.append(tuple(quant_state.shape))
        return original_matmul(a, b, quant_state=quant_state, **kwargs)

    def counting_dequantize(
        a: torch.Tensor, quant_state: Any = None, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        out = original_dequantize(a, quant_state, *args, **kwargs)
        dequantized.append(out.numel())
        return out

    monkeypatch.setattr(Nf4Experts, "expert_linear", counting_linear)
    monkeypatch.setattr(bitsandbytes, "matmul_4bit", counting_matmul)
    monkeypatch.setattr(bitsandbytes.functional, "dequantize_4bit", counting_dequantize)
    with torch.no_grad():
        model.thinker(input_ids=prompt[:, :3])  # type: ignore[operator]
    hit = set(torch.unique(picked[0]).tolist())
    assert len(hit) < experts.num_experts
    per_layer_calls = computed[: 2 * len(hit)]
    assert set(per_layer_calls) == hit and len(per_layer_calls) == 2 * len(hit)
    one_expert = max(shape.numel() for shape in experts.shapes.values())
    assert all(torch.Size(s).numel() <= one_expert for s in matmul_shapes)
    assert all(n <= one_expert for n in dequantized)


def test_none_mode_loads_exactly_what_from_pretrained_loads(
    checkpoint: Path, reference: nn.Module, prompt: torch.Tensor
) -> None:
    model, report = load_quantized(checkpoint, "none", "cpu", torch.float32)
    assert report.quantized_experts == report.quantized_linears == 0
    assert torch.equal(thinker_logits(model, prompt), thinker_logits(reference, prompt))


def test_in_place_quantization_matches_checkpoint_loading(
    checkpoint: Path, quantized: tuple[nn.Module, quantize.QuantReport], prompt: torch.Tensor
) -> None:
    from transformers import Qwen3OmniMoeForConditionalGeneration

    model = Qwen3OmniMoeForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32).eval()
    report = quantize_model_(model, "nf4", "cpu")
    assert report.weight_bytes == quantized[1].weight_bytes
    for path in quantization_plan(
        Qwen3OmniMoeForConditionalGeneration.from_pretrained(checkpoint), "nf4"
    ).experts:
        stored = dict(quantized[0].get_submodule(path).named_buffers())
        assert all(torch.equal(t, stored[n]) for n, t in model.get_submodule(path).named_buffers())
    logits = thinker_logits(model, prompt)
    assert relative_error(logits, thinker_logits(quantized[0], prompt)) < 1e-2


def test_meta_model_with_random_weights_runs(checkpoint: Path, prompt: torch.Tensor) -> None:
    from transformers import Qwen3OmniMoeConfig

    model = build_empty(Qwen3OmniMoeConfig.from_pretrained(checkpoint), torch.float32)
    report = quantize_model_(model, "nf4", "cpu", init_std=0.02)
    assert report.peak_rss_bytes >= report.start_rss_bytes > 0
    assert not any(t.device.type == "meta" for t in [*model.parameters(), *model.buffers()])
    assert torch.isfinite(thinker_logits(model, prompt)).all()


def test_streaming_engine_runs_unchanged_on_the_nf4_model(demo_dir: Path) -> None:
    from events import AudioChunk, TextDelta, TurnFinished
    from model.loading import load_model
    from model.media_input import UserTurn
    from tests.engine_helpers import greedy_engine, run

    loaded = load_model(str(demo_dir), quantization="nf4")
    assert loaded.quantization == "nf4"
    events = run(greedy_engine(loaded), UserTurn(text="hello"))
    kinds = {type(e) for e in events}
    assert {TextDelta, AudioChunk, TurnFinished} <= kinds


def test_nf4_on_the_cpu_keeps_what_its_kernels_cannot_run(demo_dir: Path, tmp_path: Path) -> None:
    """bitsandbytes' CPU 4-bit kernels need rows of whole 64-value blocks (DESIGN.md): a model whose
    Thinker experts are 96 wide (and the Talker's shared expert) keeps exactly those matrices in
    float, says so in the report, and answers turns (quantized, they failed every turn)."""
    import shutil

    from transformers import Qwen3OmniMoeConfig, Qwen3OmniMoeForConditionalGeneration

    from events import AudioChunk, TextDelta, TurnFinished
    from model.demo import MARKER_FILE, demo_config_dict
    from model.loading import load_model
    from model.media_input import UserTurn
    from tests.engine_helpers import greedy_engine, run

    config = demo_config_dict()
    config["thinker_config"]["text_config"]["moe_intermediate_size"] = 96
    config["talker_config"]["text_config"]["shared_expert_intermediate_size"] = 96
    checkpoint = tmp_path / "wide96"
    shutil.copytree(demo_dir, checkpoint)
    (checkpoint / MARKER_FILE).unlink()
    torch.manual_seed(0)
    wide = Qwen3OmniMoeForConditionalGeneration(Qwen3OmniMoeConfig(**config)).float()
    with torch.no_grad():
        for parameter in wide.parameters():
            if parameter.dim() == 3:  # fused experts, which transformers' init may leave unset
                parameter.normal_(0.0, 0.02)
    wide.save_pretrained(checkpoint)

    model, report = load_quantized(checkpoint, "nf4", "cpu", torch.float32)
    plan = quantization_plan(
        build_empty(Qwen3OmniMoeConfig.from_pretrained(checkpoint), torch.float32), "nf4", "cpu"
    )
    kept = [entry.split(":")[0] for entry in plan.kept]
    assert kept and all(".mlp.experts" in p or "shared_expert.down_proj" in p for p in kept), kept
    assert all(any(path in note and "96" in note for note in report.notes) for path in kept)
    assert report.quantized_experts == len(plan.experts) > 0  # the Talker's 64-wide experts
    assert not any(isinstance(model.get_submodule(p), Nf4Experts) for p in kept if ".experts" in p)
    loaded = load_model(str(checkpoint), device="cpu", quantization="nf4")
    engine = greedy_engine(loaded)
    for turn_id in (1, 2):
        kinds = {type(e) for e in run(engine, UserTurn(text="hello"), turn_id)}
        assert {TextDelta, AudioChunk, TurnFinished} <= kinds
