"""What a decode step costs in kernel launches and host syncs: `python -m bench.ops --json`.

Runs the engine's own step functions on Qwen3-Omni-30B-A3B's real config built on the meta device (no
weights, no memory) under `model.op_count.OpCounter`, with caches already holding `--context` tokens:
one Thinker token (token choice included), one Talker frame (the Talker and the code predictor apart),
and Code2Wav pushes of 1 and 4 frames. Per average frame: a Talker frame, a quarter of a 4-frame
push, and `THINKER_TOKENS_PER_FRAME` Thinker tokens. On a GPU each launch costs Python roughly
10 µs at batch 1 unless it runs inside a captured CUDA graph.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any
from unittest import mock

THINKER_TOKENS_PER_FRAME = 1 / 3
"""Speech runs at about 4 text tokens per second against 12.5 codec frames (bench.gpu uses a third)."""
LAUNCH_US = 10.0
# Sampling with every processor active (the costliest choice), as a voice reply is decoded.
THINKER_SAMPLING = {
    "do_sample": True,
    "temperature": 0.7,
    "top_k": 20,
    "top_p": 0.8,
    "repetition_penalty": 1.05,
}


def build_meta(quantization: str) -> tuple[Any, Any]:
    """The real-config model on the meta device, its text decoders in NF4 when asked, and the demo
    processor (same special ids and vocabulary size as the real one)."""
    import torch
    from transformers import AutoProcessor, GenerationConfig

    from bench.memory import INSTRUCT_CONFIG, load_config
    from model.demo import demo_checkpoint_dir
    from model.expert_quant import Nf4Experts
    from model.quantize import _quantized_linear, quantization_plan
    from model.weight_placement import build_empty, set_module

    dtype = torch.bfloat16
    model: Any = build_empty(load_config(INSTRUCT_CONFIG), dtype)
    plan = quantization_plan(model, quantization)  # type: ignore[arg-type]
    meta = torch.device("meta")
    for path in plan.experts:
        set_module(model, path, Nf4Experts.like(model.get_submodule(path), dtype, meta))
    for path in plan.linears:
        linear = model.get_submodule(path)
        weight = torch.empty(linear.weight.shape, device=meta, dtype=dtype)
        set_module(model, path, _quantized_linear(linear, weight, meta))
    for module in model.modules():
        for name, buffer in list(module._buffers.items()):
            if buffer is not None:
                module._buffers[name] = buffer.to(meta)
    model.generation_config = GenerationConfig(do_sample=True)
    return model, AutoProcessor.from_pretrained(demo_checkpoint_dir())


def fill_cache(cache: Any, text_config: Any, tokens: int) -> None:
    """Give a transformers cache `tokens` positions of (meta) keys and values in every layer."""
    import torch

    heads = int(text_config.num_key_value_heads)
    head_dim = int(
        getattr(text_config, "head_dim", None) or text_config.hidden_size // text_config.num_attention_heads
    )
    for layer in range(int(text_config.num_hidden_layers)):
        kv = torch.empty((1, heads, tokens, head_dim), device="meta", dtype=torch.bfloat16)
        cache.update(kv, kv, layer)


def engine_for(model: Any, processor: Any) -> Any:
    import torch

    from model.engine import Engine, EngineSettings
    from model.sampling import CODE_PREDICTOR_DEFAULT, TALKER_DEFAULT, Sampling, SamplingPlan

    # The Thinker samples with every processor active (the costliest choice).
    thinker = Sampling(do_sample=True, temperature=0.7, top_k=20, top_p=0.8, repetition_penalty=1.05)
    plan = SamplingPlan(thinker, TALKER_DEFAULT, CODE_PREDICTOR_DEFAULT)
    cpu_generator = torch.Generator
    # The meta device has no random generator; a CPU one stands in (the meta kernels never read it).
    with mock.patch.object(torch, "Generator", lambda device=None: cpu_generator()):
        return Engine(model, processor, EngineSettings(sampling=plan))


def count_steps(model: Any, processor: Any, context: int, steps: int) -> dict[str, Any]:
    """Counts of the last of `steps` calls of each step function (the first ones warm caches up)."""
    engine = engine_for(model, processor)
    return {
        "thinker": thinker_token(engine, context, steps),
        **talker_frame(engine, context, steps),
        "code2wav_1": code2wav_push(engine, 1, steps),
        "code2wav_4": code2wav_push(engine, 4, steps),
    }


def thinker_token(engine: Any, context: int, steps: int) -> Any:
    """The decode loop's Thinker part as it runs where graphs capture: choose the next token on the
    device, read it back for the text stream, mark it seen for the repetition penalty, feed it."""
    import torch
    from transformers import DynamicCache

    from model.device_sampling import DeviceSampler
    from model.op_count import counting
    from model.thinker_decode import ThinkerDecoder

    text_config = engine.thinker.config.text_config
    engine.context.cache = DynamicCache(config=text_config)
    fill_cache(engine.context.cache, text_config, context)
    vocab = int(text_config.vocab_size)
    sampler = DeviceSampler(engine.plan.thinker, vocab, device=engine.device, generator=engine._generator)
    seen = sampler.seen_mask()
    decoder = ThinkerDecoder(engine.thinker, engine.context.cache, 0, static=True)
    logits = torch.empty((1, 1, vocab), device=engine.device, dtype=torch.bfloat16)
    for _ in range(steps):
        with counting() as count:
            chosen = sampler.choose(logits[:, -1], seen=seen)
            int(chosen)
            seen.scatter_(1, chosen, True)
            logits = decoder.step(chosen)
    return count


def talker_frame(engine: Any, context: int, steps: int) -> dict[str, Any]:
    """`TalkerStream.step` as it runs where graphs capture (on static keys and values): the code
    predictor's 15 codes, then the Talker's next code 0."""
    import torch
    from transformers import DynamicCache

    from model.op_count import OpCount, counting
    from model.talker_stream import TalkerStream

    talker = engine.talker
    stream = TalkerStream(
        talker,
        engine.plan.talker,
        engine.plan.code_predictor,
        generator=engine._generator,
        static_decode=True,
    )
    text_config = talker.config.text_config
    stream.cache = DynamicCache(config=text_config)
    fill_cache(stream.cache, text_config, context)
    hidden = int(text_config.hidden_size)
    stream.last_hidden = torch.empty((1, 1, hidden), device=engine.device, dtype=torch.bfloat16)
    stream.code0_ids = [0] * (context // 4)
    stream._length = context
    stream._code0 = torch.zeros((1, 1), dtype=torch.long, device=engine.device)
    complete = stream.complete_frame
    predictor = OpCount()

    def counted_complete() -> Any:
        nonlocal predictor
        with counting() as inner:
            result = complete()
        predictor = inner
        return result

    stream.complete_frame = counted_complete  # type: ignore[method-assign]
    text = torch.empty((1, 1, hidden), device=engine.device, dtype=torch.bfloat16)
    for _ in range(steps):
        with counting() as count:
            stream.step(text)
    return {"talker": _minus(count, predictor), "code_predictor": predictor}


def _minus(total: Any, part: Any) -> Any:
    from model.op_count import OpCount

    return OpCount(
        ops=total.ops - part.ops,
        launches=total.launches - part.launches,
        syncs=total.syncs - part.syncs,
        captured_launches=total.captured_launches - part.captured_launches,
        captured_syncs=total.captured_syncs - part.captured_syncs,
        region_calls=total.region_calls - part.region_calls,
        sync_ops=total.sync_ops - part.sync_ops,
    )


def code2wav_push(engine: Any, frames: int, steps: int) -> Any:
    """`Code2WavStream.push` of `frames` frames, after enough frames to fill every layer's state."""
    import torch

    from model.code2wav_stream import Code2WavStream
    from model.op_count import counting

    stream = Code2WavStream(engine.model.code2wav)
    quantizers = stream.num_quantizers
    with counting():  # it stands in for the values read back on the meta device
        stream.push(torch.zeros((quantizers, 80), dtype=torch.long, device=engine.device))
    for _ in range(steps):
        with counting() as count:
            stream.push(torch.zeros((quantizers, frames), dtype=torch.long, device=engine.device))
    return count


def summarise(counts: dict[str, Any]) -> dict[str, Any]:
    """Per-step figures and the average frame."""
    thinker, talker, predictor = counts["thinker"], counts["talker"], counts["code_predictor"]
    c2w_1, c2w_4 = counts["code2wav_1"], counts["code2wav_4"]

    def per_frame(attr: str) -> float:
        frame = getattr(talker, attr) + getattr(predictor, attr) + getattr(c2w_4, attr) / 4
        return frame + THINKER_TOKENS_PER_FRAME * getattr(thinker, attr)

    result: dict[str, Any] = {}
    for name, count in (
        ("thinker_token", thinker),
        ("talker_frame", talker),
        ("code_predictor_frame", predictor),
        ("code2wav_push_1", c2w_1),
        ("code2wav_push_4", c2w_4),
    ):
        result[f"{name}_ops"] = count.launches
        result[f"{name}_syncs"] = count.syncs
        result[f"{name}_python_launches"] = count.python_launches
        result[f"{name}_captured_syncs"] = count.captured_syncs
    launches = per_frame("python_launches")
    result.update(
        ops_per_frame=round(per_frame("launches")),
        ops_per_frame_while_text=round(
            per_frame("launches") + (1 - THINKER_TOKENS_PER_FRAME) * thinker.launches
        ),
        syncs_per_frame=round(per_frame("syncs"), 2),
        python_launches_per_frame=round(launches),
        est_ms_per_frame_at_10us=round(launches * LAUNCH_US / 1000, 2),
        sync_ops_thinker_token=dict(thinker.sync_ops),
        sync_ops_talker_frame=dict(talker.sync_ops + predictor.sync_ops),
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default output)")
    parser.add_argument("--quantization", choices=("nf4", "none"), default="nf4")
    parser.add_argument("--context", type=int, default=500, help="tokens already in every cache")
    parser.add_argument("--steps", type=int, default=2, help="calls per step function; the last is counted")
    args = parser.parse_args(argv)

    import torch

    start = time.perf_counter()
    model, processor = build_meta(args.quantization)
    with torch.inference_mode():
        counts = count_steps(model, processor, args.context, args.steps)
    result: dict[str, Any] = {
        "config": "real",
        "device": "meta",
        "quantization": args.quantization,
        "context_tokens": args.context,
        **summarise(counts),
        "run_s": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
