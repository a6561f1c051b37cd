"""Model benchmark on one device: `python -m bench.gpu --config demo|real --quantization nf4|none --json`.

`--config real` builds Qwen3-Omni-30B-A3B-Instruct from its config with random weights straight on
the GPU (compute time does not depend on the values; weights are drawn and quantized tensor by tensor,
so the bf16 model is never held whole); `--config demo` loads the demo checkpoint, on the CPU unless
`--device` says otherwise, so the script keeps working on machines without a GPU (CI).
`--no-graphs` runs the decode steps eagerly on CUDA too (`model.step_graph`), to measure what the
captured CUDA graphs save; off CUDA the steps always run eagerly and the switch changes nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from bench.engine import make_engine, stream_turn, tone
from model.media_input import UserTurn, VideoClip

FRAME_S = 0.08


def build(config_name: str, quantization: str, device: str) -> Any:
    """A LoadedModel: the demo checkpoint through `load_model`, or the real config, random, on `device`."""
    from model.demo import demo_checkpoint_dir
    from model.loading import LoadedModel, load_model

    if config_name == "demo":
        return load_model(str(demo_checkpoint_dir()), device=device, quantization=quantization)
    import torch
    from transformers import AutoProcessor, GenerationConfig, Qwen3OmniMoeConfig

    from bench.memory import INSTRUCT_CONFIG
    from model.quantize import build_empty, quantize_model_

    if not device.startswith("cuda"):
        raise SystemExit(
            "bench.gpu: --config real needs a CUDA device (35 B parameters); use --config demo here"
        )
    config = Qwen3OmniMoeConfig.from_json_file(INSTRUCT_CONFIG)
    model: Any = build_empty(config, torch.bfloat16)
    quantize_model_(model, quantization, device, torch.bfloat16, init_std=config.initializer_range)  # type: ignore[arg-type]
    model.generation_config = GenerationConfig(do_sample=False)
    # The real tokenizer is not on this machine; the demo's has the same special ids and vocabulary size.
    processor = AutoProcessor.from_pretrained(demo_checkpoint_dir())
    return LoadedModel(
        model, processor, INSTRUCT_CONFIG, "real-config", device, "bfloat16", quantization, False
    )


def memory_gb(device: str) -> dict[str, float]:
    import torch

    if device.startswith("cuda"):
        return {
            "gpu_allocated_gb": torch.cuda.memory_allocated() / 2**30,
            "gpu_peak_gb": torch.cuda.max_memory_allocated() / 2**30,
        }
    import psutil

    return {"host_rss_gb": psutil.Process().memory_info().rss / 2**30}


def measure(loaded: Any, reply_s: float, text_tokens: int) -> dict[str, float]:
    frames = int(reply_s / FRAME_S)
    settings = {"max_text_tokens": text_tokens, "max_codec_frames": frames}
    audio_turn = UserTurn(audio=tone(5.0))
    camera = np.random.default_rng(0).integers(0, 256, (4, 480, 640, 3), dtype=np.uint8)
    video_turn = UserTurn(audio=tone(5.0), video=VideoClip(camera, fps=0.8))
    stream_turn(make_engine(loaded, **settings), audio_turn)  # warm-up
    first_ms, finished = stream_turn(make_engine(loaded, **settings), audio_turn)
    stream_turn(make_engine(loaded, **settings), video_turn)
    first_video_ms, _ = stream_turn(make_engine(loaded, **settings), video_turn)
    text_only = make_engine(loaded, speak=False, max_text_tokens=text_tokens)
    _, text_finished = stream_turn(text_only, audio_turn)
    s, t = finished.stats, text_finished.stats
    decode_s = (t.finished_s or 0.0) - (t.first_text_s or 0.0)
    total_s = (s.finished_s or 0.0) - s.started_s
    return {
        "first_audio_ms_audio_5s": first_ms,
        "first_audio_ms_audio_5s_video_4_frames": first_video_ms,
        "thinker_decode_tokens_per_s": (t.text_tokens - 1) / max(decode_s, 1e-9),
        "talker_frames_per_s": s.codec_frames / max(s.talker_forward_s, 1e-9),
        "code2wav_ms_per_frame": s.code2wav_forward_s * 1e3 / max(1, s.codec_frames),
        "real_time_factor": total_s / max(1e-9, s.codec_frames * FRAME_S),
        "reply_audio_s": s.codec_frames * FRAME_S,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default output)")
    parser.add_argument("--config", choices=("demo", "real"), default="demo")
    parser.add_argument("--quantization", choices=("nf4", "none"), default="nf4")
    parser.add_argument("--device", default=None, help="default: cuda for real, cpu for demo")
    parser.add_argument("--reply-s", type=float, default=10.0)
    parser.add_argument(
        "--graphs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="replay the captured decode steps as CUDA graphs (CUDA only)",
    )
    args = parser.parse_args(argv)

    import torch

    from model.step_graph import set_cuda_graphs

    set_cuda_graphs(args.graphs)

    device = args.device or ("cuda" if args.config == "real" else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            f"bench.gpu: no CUDA device here for --device {device}; run --config demo on the CPU"
        )
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    loaded = build(args.config, args.quantization, device)
    result: dict[str, Any] = {
        "config": args.config,
        "quantization": args.quantization,
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "cuda_graphs": args.graphs and device.startswith("cuda"),
        "load_s": time.perf_counter() - start,
        "weights_gb": loaded.weight_bytes / 2**30,
    }
    result.update({f"after_load_{k}": v for k, v in memory_gb(device).items()})
    with torch.inference_mode():
        result.update(measure(loaded, args.reply_s, text_tokens=max(8, int(args.reply_s / FRAME_S) // 3)))
    result.update(memory_gb(device))
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
