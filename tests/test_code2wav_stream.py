"""The incremental Code2Wav decode equals transformers' one-shot forward, however the frames arrive."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import cast

import numpy as np
import pytest
import torch
from torch import nn
from transformers.cache_utils import DynamicSlidingWindowLayer
from transformers.models.qwen3_omni_moe.configuration_qwen3_omni_moe import Qwen3OmniMoeCode2WavConfig
from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import Qwen3OmniMoeCode2Wav

from model.code2wav_stream import (
    CausalConvState,
    CausalTransConvState,
    Code2WavStream,
    ConvNeXtState,
    ResidualUnitState,
    streaming_stages,
)

REPLY_FRAMES = 750
SAMPLES_PER_FRAME = 1920
ONE_SHOT_TRIM = 555
ATOL = 1e-4


def tiny_code2wav_config() -> Qwen3OmniMoeCode2WavConfig:
    """The real Code2Wav shape (8 layers, window 72, 1920 samples per frame) with tiny widths."""
    return Qwen3OmniMoeCode2WavConfig(
        codebook_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=2,
        num_key_value_heads=2,
        decoder_dim=32,
        num_hidden_layers=8,
        sliding_window=72,
        num_quantizers=16,
        upsample_rates=[8, 5, 4, 3],
        upsampling_ratios=[2, 2],
        layer_scale_initial_scale=1.0,
    )


def _rms(x: torch.Tensor) -> float:
    return float(x.double().pow(2).mean().sqrt())


@torch.no_grad()
def build_tiny_code2wav(
    config: Qwen3OmniMoeCode2WavConfig | None = None, seed: int = 0
) -> Qwen3OmniMoeCode2Wav:
    """Random weights scaled so that every stage matters: unit-variance layers, a waveform of RMS 0.25.

    The module's own init (std 0.02, ConvNeXt gamma 1e-6) gives near-silent output that any decoder matches.
    """
    gen = torch.Generator().manual_seed(seed)
    model = Qwen3OmniMoeCode2Wav(config or tiny_code2wav_config()).eval()
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv1d):
            module.weight.normal_(0.0, module.weight[0].numel() ** -0.5, generator=gen)
        elif isinstance(module, nn.ConvTranspose1d):
            fan_in = module.weight.shape[0] * module.weight.shape[2] // module.stride[0]
            module.weight.normal_(0.0, fan_in**-0.5, generator=gen)
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, 1.0, generator=gen)
        if isinstance(module, nn.Linear | nn.Conv1d | nn.ConvTranspose1d) and module.bias is not None:
            module.bias.normal_(0.0, 0.02, generator=gen)
        if isinstance(getattr(module, "gamma", None), nn.Parameter):
            module.gamma.fill_(1.0)
        if isinstance(getattr(module, "alpha", None), nn.Parameter):
            module.alpha.normal_(0.0, 0.3, generator=gen)
            module.beta.normal_(0.0, 0.3, generator=gen)

    codes = random_codes(model, 40, seed=seed + 1)
    seen: dict[str, torch.Tensor] = {}

    def output_rms(stage: nn.Module) -> float:
        handle = stage.register_forward_hook(lambda _m, _i, out: seen.__setitem__("out", out))
        model(codes)
        handle.remove()
        return _rms(seen["out"])

    for block in model.decoder[1:-2]:
        for _ in range(3):
            scale = 1.0 / output_rms(block)
            block.block[1].conv.weight.mul_(scale)
            block.block[1].conv.bias.mul_(scale)
    last = model.decoder[-1].conv
    scale = 0.25 / output_rms(model.decoder[-1])
    last.weight.mul_(scale)
    last.bias.mul_(scale)
    return model


def random_codes(model: Qwen3OmniMoeCode2Wav, frames: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    config = model.config
    return torch.randint(0, config.codebook_size, (1, config.num_quantizers, frames), generator=gen)


def one_shot(model: Qwen3OmniMoeCode2Wav, codes: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model(codes)[0, 0].float().numpy()


def chunks(frames: int, sizes: Sequence[int]) -> Iterator[tuple[int, int]]:
    start, i = 0, 0
    while start < frames:
        end = min(start + sizes[i % len(sizes)], frames)
        yield start, end
        start, i = end, i + 1


def stream_decode(model: Qwen3OmniMoeCode2Wav, codes: torch.Tensor, sizes: Sequence[int]) -> np.ndarray:
    stream = Code2WavStream(model)
    pieces = [stream.push(codes[..., start:end]) for start, end in chunks(codes.shape[-1], sizes)]
    pieces.append(stream.flush())
    assert stream.frames_pushed == codes.shape[-1]
    assert stream.samples_emitted == sum(len(p) for p in pieces)
    return np.concatenate(pieces)


@pytest.fixture(scope="module")
def tiny() -> Qwen3OmniMoeCode2Wav:
    torch.manual_seed(0)
    return build_tiny_code2wav()


@pytest.fixture(scope="module")
def reply_codes(tiny: Qwen3OmniMoeCode2Wav) -> torch.Tensor:
    return random_codes(tiny, REPLY_FRAMES, seed=7)


@pytest.fixture(scope="module")
def reference(tiny: Qwen3OmniMoeCode2Wav, reply_codes: torch.Tensor) -> np.ndarray:
    return one_shot(tiny, reply_codes)


def test_one_shot_returns_1920_per_frame_less_555(reference: np.ndarray) -> None:
    assert len(reference) == REPLY_FRAMES * SAMPLES_PER_FRAME - ONE_SHOT_TRIM


def test_tiny_model_makes_loud_unclipped_audio(reference: np.ndarray) -> None:
    rms = float(np.sqrt(np.mean(reference.astype(np.float64) ** 2)))
    assert 0.1 < rms < 0.5
    assert np.mean(np.abs(reference) >= 1.0) < 0.01


@pytest.mark.parametrize("sizes", [[1], [7], [25], [3, 1, 50, 2, 11, 1, 1, 120]], ids=str)
def test_stream_equals_one_shot(
    tiny: Qwen3OmniMoeCode2Wav, reply_codes: torch.Tensor, reference: np.ndarray, sizes: list[int]
) -> None:
    streamed = stream_decode(tiny, reply_codes, sizes)
    assert streamed.dtype == np.float32
    assert len(streamed) == len(reference)
    assert np.abs(streamed - reference).max() <= ATOL


def test_short_left_context_fails_the_criterion(
    tiny: Qwen3OmniMoeCode2Wav, reply_codes: torch.Tensor, reference: np.ndarray
) -> None:
    """Re-decoding windows with 25 frames of left context (`chunked_decode`'s) gives the right length only."""
    context, pieces = 25, []
    for start, end in chunks(REPLY_FRAMES, [50]):
        left = min(context, start)
        window = one_shot(tiny, reply_codes[..., start - left : end])
        pieces.append(window[left * SAMPLES_PER_FRAME - ONE_SHOT_TRIM :] if left else window)
    approximate = np.concatenate(pieces)
    assert len(approximate) == len(reference)
    assert np.abs(approximate - reference).max() > 100 * ATOL


def test_first_single_frame_push_returns_its_final_samples(
    tiny: Qwen3OmniMoeCode2Wav, reply_codes: torch.Tensor, reference: np.ndarray
) -> None:
    stream = Code2WavStream(tiny)
    first = stream.push(reply_codes[0, :, :1])
    second = stream.push(reply_codes[0, :, 1:2])
    assert len(first) == SAMPLES_PER_FRAME - ONE_SHOT_TRIM
    assert len(second) == SAMPLES_PER_FRAME
    assert np.abs(np.concatenate([first, second]) - reference[: len(first) + len(second)]).max() <= ATOL


def test_float64_stream_is_exact(tiny: Qwen3OmniMoeCode2Wav) -> None:
    """In double precision the only difference left is rounding: the carried state is the full context."""
    model = copy.deepcopy(tiny).double()
    codes = random_codes(model, 200, seed=3)
    streamed = stream_decode(model, codes, [1, 5, 2, 80, 3])
    assert np.abs(streamed - one_shot(model, codes)).max() <= 1e-10


def _stage_input_channels(stage: object) -> int:
    if isinstance(stage, CausalConvState | CausalTransConvState):
        return stage.layer.conv.in_channels
    if isinstance(stage, ConvNeXtState):
        return stage.block.dwconv.conv.in_channels
    if isinstance(stage, ResidualUnitState):
        return stage.unit.conv1.conv.in_channels
    raise TypeError(type(stage).__name__)


def test_each_streaming_stage_equals_its_module(tiny: Qwen3OmniMoeCode2Wav) -> None:
    model = copy.deepcopy(tiny).double()
    gen = torch.Generator().manual_seed(11)
    stages = [s for s in streaming_stages(model) if not isinstance(s, nn.Module)]
    assert {type(s) for s in stages} == {
        CausalConvState,
        CausalTransConvState,
        ConvNeXtState,
        ResidualUnitState,
    }
    modules = {
        CausalConvState: lambda s: s.layer,
        CausalTransConvState: lambda s: s.layer,
        ConvNeXtState: lambda s: s.block,
        ResidualUnitState: lambda s: s.unit,
    }
    with torch.inference_mode():
        for stage in stages:
            x = torch.randn(1, _stage_input_channels(stage), 90, generator=gen, dtype=torch.float64)
            whole = modules[type(stage)](stage)(x)
            parts = torch.cat([stage(x[..., a:b]) for a, b in chunks(90, [1, 13, 2, 30])], dim=-1)
            assert parts.shape == whole.shape
            assert (parts - whole).abs().max() <= 1e-12


def _cache_layers(stream: Code2WavStream) -> list[DynamicSlidingWindowLayer]:
    layers = stream._cache.layers
    assert all(isinstance(layer, DynamicSlidingWindowLayer) for layer in layers)
    return cast(list[DynamicSlidingWindowLayer], layers)


def _state_numel(stream: Code2WavStream) -> int:
    tensors = [t for layer in _cache_layers(stream) for t in (layer.keys, layer.values)]
    for stage in stream._stages:
        for state in (stage, getattr(stage, "dwconv", None), getattr(stage, "conv1", None)):
            tensors.append(getattr(state, "history", None))
    return sum(t.numel() for t in tensors if t is not None)


def test_carried_state_stays_constant(tiny: Qwen3OmniMoeCode2Wav, reply_codes: torch.Tensor) -> None:
    stream = Code2WavStream(tiny)
    sizes = []
    for start, end in chunks(400, [4]):
        stream.push(reply_codes[..., start:end])
        sizes.append(_state_numel(stream))
    assert sizes[-1] == sizes[25] > 0
    keys = _cache_layers(stream)[0].keys
    assert keys is not None
    assert keys.shape[-2] == tiny.config.sliding_window - 1


def test_reset_and_context_manager_start_a_new_reply(
    tiny: Qwen3OmniMoeCode2Wav, reply_codes: torch.Tensor, reference: np.ndarray
) -> None:
    with Code2WavStream(tiny) as stream:
        first = stream.push(reply_codes[..., :10])
        assert len(stream.flush()) == 0
        with pytest.raises(RuntimeError):
            stream.push(reply_codes[..., 10:11])
        stream.reset()
        assert stream.frames_pushed == stream.samples_emitted == 0
        again = stream.push(reply_codes[..., :10])
    assert stream.frames_pushed == 0
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - reference[: len(first)]).max() <= ATOL


def test_rejects_codes_of_the_wrong_shape(tiny: Qwen3OmniMoeCode2Wav) -> None:
    stream = Code2WavStream(tiny)
    with pytest.raises(ValueError, match="shape"):
        stream.push(torch.zeros(8, 3, dtype=torch.long))
    assert len(stream.push(torch.zeros(16, 0, dtype=torch.long))) == 0
