"""Weight accounting of the real Qwen3-Omni config, built on the meta device."""

from __future__ import annotations

import pytest
import torch

from bench.memory import INSTRUCT_CONFIG, load_config
from model.expert_quant import nf4_bytes, quantize_nf4
from model.memory import GIB, build_meta_model, memory_report

NF4_BUDGET_GIB = 20.0


@pytest.fixture(scope="module")
def instruct_model() -> torch.nn.Module:
    return build_meta_model(load_config(INSTRUCT_CONFIG))


def test_bf16_total_is_two_bytes_per_parameter(instruct_model: torch.nn.Module) -> None:
    report = memory_report(instruct_model, "none")
    assert report.parameters == pytest.approx(35.26e9, rel=1e-3)
    assert report.total_bytes == pytest.approx(2 * report.parameters, rel=0.01)


def test_nf4_fits_budget_and_shrinks_experts(instruct_model: torch.nn.Module) -> None:
    bf16 = memory_report(instruct_model, "none")
    nf4 = memory_report(instruct_model, "nf4")
    assert nf4.total_bytes <= NF4_BUDGET_GIB * GIB
    assert set(nf4.bytes_by_part) == set(bf16.bytes_by_part)
    ratio = nf4.bytes_by_part["thinker_experts"] / bf16.bytes_by_part["thinker_experts"]
    assert 4.0 / 16 < ratio < 4.2 / 16
    for kept in ("embeddings_heads", "audio_encoder", "vision_encoder", "code_predictor", "code2wav"):
        assert nf4.bytes_by_part[kept] == bf16.bytes_by_part[kept]


def test_thinker_only_has_no_talker_parts() -> None:
    report = memory_report(build_meta_model(load_config(INSTRUCT_CONFIG, with_talker=False)), "nf4")
    assert not {"talker", "code_predictor", "code2wav"} & set(report.bytes_by_part)
    assert report.total_bytes < 18.0 * GIB


@pytest.mark.parametrize("shape", [(96, 128), (2 * 768, 2048 // 8), (7, 64)])
def test_nf4_bytes_match_what_bitsandbytes_stores(shape: tuple[int, int]) -> None:
    packed, state = quantize_nf4(torch.randn(shape))
    tensors = [packed, state.absmax, state.code, state.offset, state.state2.absmax, state.state2.code]
    assert sum(t.numel() * t.element_size() for t in tensors) == nf4_bytes(shape[0] * shape[1])
