"""Streaming engine benchmark: `python -m bench.engine --json`.

Runs on the CPU with the demo model by default (CI-sized); `--model` and `--device` point it at a
real checkpoint on a GPU. Every figure is measured in this process, the baselines included.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from typing import Any

import numpy as np

from bench.tool_turn import spoken_notice, tool_roundtrip
from events import AudioChunk, EngineError, TurnFinished
from model.media_input import UserTurn

SYSTEM = "You are a benchmark assistant."
FRAME_S = 0.08


def tone(seconds: float, freq_hz: float = 220.0, rate_hz: int = 16_000) -> np.ndarray:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    noise = np.random.default_rng(0).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * freq_hz * t) + 0.01 * noise).astype(np.float32)


def make_engine(loaded: Any, **settings: Any) -> Any:
    from model.engine import Engine, EngineSettings
    from model.sampling import SamplingPlan

    plan = SamplingPlan.from_generation_config(loaded.model.generation_config).greedy()
    settings.setdefault("transcribe", False)  # measured on its own (`transcription`)
    return Engine(
        loaded.model, loaded.processor, EngineSettings(system_prompt=SYSTEM, sampling=plan, **settings)
    )


def stream_turn(engine: Any, turn: UserTurn, turn_id: int = 1) -> tuple[float, TurnFinished]:
    """Runs one turn; returns (first audio in ms from the call, the TurnFinished event)."""
    start = time.perf_counter()
    first_audio_ms = float("nan")
    for event in engine.respond(turn, turn_id):
        if isinstance(event, AudioChunk) and first_audio_ms != first_audio_ms:
            first_audio_ms = (time.perf_counter() - start) * 1e3
        if isinstance(event, EngineError):
            raise RuntimeError(event.message)
        if isinstance(event, TurnFinished):
            return first_audio_ms, event
    raise RuntimeError("the turn ended without TurnFinished")


def first_audio(loaded: Any, frames: int, text_tokens: int) -> dict[str, float]:
    """First audio of the same prompt, streamed versus transformers' `generate()` (whole reply)."""
    from model.reference import reference_generate

    turn = UserTurn(audio=tone(5.0))
    settings = {"max_text_tokens": text_tokens, "max_codec_frames": frames}
    stream_turn(make_engine(loaded, **settings), turn)  # warm-up
    stream_ms, finished = stream_turn(make_engine(loaded, **settings), turn)
    kwargs: dict[str, Any] = {
        "system_prompt": SYSTEM,
        "max_text_tokens": text_tokens,
        "max_codec_frames": frames,
    }
    reference_generate(loaded.model, loaded.processor, turn, **kwargs)  # warm-up
    start = time.perf_counter()
    reply = reference_generate(loaded.model, loaded.processor, turn, **kwargs)
    generate_ms = (time.perf_counter() - start) * 1e3
    stats = finished.stats
    total_s = (stats.finished_s or 0.0) - stats.started_s
    model_s = stats.thinker_forward_s + stats.talker_forward_s + stats.code2wav_forward_s
    return {
        "reply_audio_s": stats.codec_frames * FRAME_S,
        "generate_reply_audio_s": 0.0 if reply.codes is None else reply.codes.shape[-1] * FRAME_S,
        "first_audio_ms_stream": stream_ms,
        "first_audio_ms_generate": generate_ms,
        "first_audio_speedup": generate_ms / stream_ms,
        "engine_overhead_ms_per_frame": (total_s - model_s) * 1e3 / max(1, stats.codec_frames),
        "decode_step_ms": total_s * 1e3 / max(1, stats.codec_frames),
        "real_time_factor": total_s / max(1e-9, stats.codec_frames * FRAME_S),
    }


def transcription(loaded: Any, frames: int, text_tokens: int, trials: int = 3) -> dict[str, float]:
    """The same 5 s turn with the user's words transcribed after the reply's text, and without, in
    turn (median of `trials` each, in this process: the goal is a ratio of 1 within noise), and the
    transcription's Thinker time per second of speech."""
    turn = UserTurn(audio=tone(5.0))
    settings = {"max_text_tokens": text_tokens, "max_codec_frames": frames}
    stream_turn(make_engine(loaded, transcribe=True, **settings), turn)  # warm-up
    first_ms: dict[bool, list[float]] = {False: [], True: []}
    decode_s: list[float] = []
    for _ in range(trials):
        for transcribe in (False, True):
            engine = make_engine(loaded, transcribe=transcribe, **settings)
            first_ms[transcribe].append(stream_turn(engine, turn)[0])
            if transcribe:
                decode_s.append(engine.last_transcribe_s or 0.0)
    with_ms, without_ms = statistics.median(first_ms[True]), statistics.median(first_ms[False])
    return {
        "first_audio_ms_with_transcription": with_ms,
        "first_audio_ms_without_transcription": without_ms,
        "first_audio_transcription_ratio": with_ms / without_ms,
        "transcribe_ms_per_s": statistics.median(decode_s) * 1e3 / 5.0,
    }


def first_audio_video(loaded: Any, frames: int, text_tokens: int) -> dict[str, float]:
    """First audio for 5 s of audio with its camera frames (default rate), and the prompt tokens
    that a second of video adds at the default settings."""
    from model.media_input import VideoClip

    fps = 2.0
    camera = np.random.default_rng(0).integers(0, 256, (int(5 * fps), 480, 640, 3), dtype=np.uint8)
    turn = UserTurn(audio=tone(5.0), video=VideoClip(camera, fps))
    first_ms, tokens_per_s = _first_audio_with_frames(loaded, turn, frames, text_tokens)
    return {"first_audio_ms_video": first_ms, "video_prompt_tokens_per_s": tokens_per_s}


def _first_audio_with_frames(
    loaded: Any, turn: UserTurn, frames: int, text_tokens: int
) -> tuple[float, float]:
    """First audio of a 5 s turn with video (after a warm-up), and the video tokens a second adds."""
    settings = {"max_text_tokens": text_tokens, "max_codec_frames": frames}
    stream_turn(make_engine(loaded, **settings), turn)  # warm-up
    engine = make_engine(loaded, **settings)
    first_ms, _ = stream_turn(engine, turn)
    video_id = loaded.model.config.thinker_config.video_token_id
    video_tokens = sum(int((s.ids == video_id).sum()) for s in engine.context.segments)
    return first_ms, video_tokens / 5.0


def first_audio_screen(loaded: Any, frames: int, text_tokens: int) -> dict[str, float]:
    """First audio for the same 5 s of audio with a shared screen's frames as the app picks them
    (bench/screen_turn.py: a still 1920x1080 desktop), beside `first_audio_ms_video`."""
    from bench.screen_turn import screen_turn

    first_ms, tokens_per_s = _first_audio_with_frames(loaded, screen_turn(tone(5.0)), frames, text_tokens)
    return {"first_audio_ms_screen": first_ms, "screen_prompt_tokens_per_s": tokens_per_s}


def speech_like(seconds: float) -> np.ndarray:
    """Voiced bursts over a noise floor, as int16 (what the microphone delivers)."""
    t = np.arange(int(seconds * 16_000)) / 16_000
    voiced = 0.2 * (0.5 + 0.5 * np.sin(2 * np.pi * 1.3 * t) ** 2) * np.sin(2 * np.pi * 140 * t)
    noise = 0.02 * np.random.default_rng(0).standard_normal(t.size)
    return ((voiced + noise) * 32767).astype(np.int16)


def incremental_prefill(loaded: Any, seconds: list[float], headline_s: float) -> dict[str, Any]:
    """End of the user turn to first audio, prefilling the turn at its end (one-shot) versus while it
    is spoken (`Engine.listen` fed 0.5 s at a time, untimed), for turns with camera frames at 2 fps."""
    from model.media_input import VideoClip

    fps, piece = 2.0, 8_000
    settings = {"max_text_tokens": 8, "max_codec_frames": 4}
    by_length: dict[str, dict[str, float]] = {}
    for length in seconds:
        audio = speech_like(length)
        frames = np.random.default_rng(1).integers(0, 256, (int(length * fps), 240, 320, 3), dtype=np.uint8)
        turn = UserTurn(audio=audio, video=VideoClip(frames, fps))
        stream_turn(make_engine(loaded, **settings), turn)  # warm-up
        oneshot_ms, _ = stream_turn(make_engine(loaded, **settings), turn)
        engine = make_engine(loaded, **settings)
        for start in range(0, audio.size, piece):
            due = int(min(audio.size, start + piece) / 16_000 * fps)
            engine.listen(audio[start : start + piece], list(frames[int(start / 16_000 * fps) : due]), fps)
        incremental_ms, finished = stream_turn(engine, turn)
        by_length[f"{length:g}s"] = {
            "oneshot_ms": oneshot_ms,
            "incremental_ms": incremental_ms,
            "left_for_turn_end_tokens": finished.stats.new_prompt_tokens
            - finished.stats.live_prefilled_tokens,
            "turn_tokens": finished.stats.new_prompt_tokens,
        }
    headline = by_length[f"{headline_s:g}s"]
    return {
        "turn_end_to_first_audio_ms_oneshot": headline["oneshot_ms"],
        "turn_end_to_first_audio_ms_incremental": headline["incremental_ms"],
        "incremental_prefill_ratio": headline["incremental_ms"] / headline["oneshot_ms"],
        "turn_end_to_first_audio_by_turn_length": by_length,
    }


def code2wav_constancy(loaded: Any, seconds: float, chunk_frames: int) -> dict[str, float]:
    """Code2Wav ms per frame over the first and last 10 s of a long reply (incremental decode)."""
    import torch

    from model.code2wav_stream import Code2WavStream

    code2wav = loaded.model.code2wav
    config = code2wav.config
    frames = int(seconds / FRAME_S)
    gen = torch.Generator().manual_seed(0)
    codes = torch.randint(0, config.codebook_size, (config.num_quantizers, frames), generator=gen)
    with Code2WavStream(code2wav) as warm:  # every cache shape once (the window fills over 72 frames)
        for i in range(0, 200, chunk_frames):
            warm.push(codes[:, i : i + chunk_frames])
    stream = Code2WavStream(code2wav)
    per_frame_ms = []
    for i in range(0, frames, chunk_frames):
        start = time.perf_counter()
        stream.push(codes[:, i : i + chunk_frames])
        per_frame_ms.append((time.perf_counter() - start) * 1e3 / chunk_frames)
    window = int(10 / FRAME_S) // chunk_frames
    first, last = statistics.median(per_frame_ms[:window]), statistics.median(per_frame_ms[-window:])
    return {
        "code2wav_reply_s": seconds,
        "code2wav_ms_per_frame_first_10s": first,
        "code2wav_ms_per_frame_last_10s": last,
        "code2wav_last_over_first": last / first,
    }


def prefill_growth(loaded: Any, turns: int) -> dict[str, float]:
    """Prefill time of turn 1 and of turn `turns` (2 s of audio each) as the history grows."""
    engine = make_engine(loaded, max_text_tokens=16, max_codec_frames=4)
    stream_turn(make_engine(loaded, max_text_tokens=4, max_codec_frames=2), UserTurn(audio=tone(2.0)))
    prefill_ms = []
    for turn_id in range(1, turns + 1):
        _, finished = stream_turn(engine, UserTurn(audio=tone(2.0, 200 + 20 * turn_id)), turn_id)
        prefill_ms.append(((finished.stats.prefill_done_s or 0.0) - finished.stats.started_s) * 1e3)
    return {
        "prefill_ms_turn1": prefill_ms[0],
        f"prefill_ms_turn{turns}": prefill_ms[-1],
        f"prefill_ratio_turn{turns}": prefill_ms[-1] / prefill_ms[0],
        "context_tokens_at_last_turn": float(engine.context.length),
    }


def cancel_latency(loaded: Any, trials: int) -> dict[str, float]:
    """From setting the cancel flag (in another thread, mid-reply) to the iterator ending."""
    latencies = []
    for trial in range(trials):
        engine = make_engine(loaded, max_text_tokens=200, max_codec_frames=200)
        cancel = threading.Event()
        set_at: list[float] = []
        chunks = 0

        def fire(cancel: threading.Event = cancel, set_at: list[float] = set_at) -> None:
            set_at.append(time.perf_counter())
            cancel.set()

        for event in engine.respond(UserTurn(audio=tone(1.0)), trial, cancel):
            if isinstance(event, AudioChunk):
                chunks += 1
                if chunks == 3:
                    thread = threading.Thread(target=fire)
                    thread.start()
                    thread.join()
            if isinstance(event, TurnFinished):
                latencies.append((time.perf_counter() - set_at[0]) * 1e3)
    return {"cancel_latency_ms": statistics.median(latencies), "cancel_latency_ms_max": max(latencies)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default output)")
    parser.add_argument("--model", default=None, help="checkpoint folder or hub id (default: the demo model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quantization", default="none", choices=("none", "nf4"))
    parser.add_argument("--reply-s", type=float, default=10.0, help="forced reply length for first audio")
    parser.add_argument(
        "--long-reply-s", type=float, default=60.0, help="reply length for Code2Wav constancy"
    )
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--cancel-trials", type=int, default=5)
    parser.add_argument("--tool-trials", type=int, default=5, help="tool calls for tool_roundtrip_ms")
    parser.add_argument("--turn-lengths-s", type=float, nargs="+", default=[5.0, 20.0, 60.0])
    args = parser.parse_args(argv)

    import torch

    from model.demo import demo_checkpoint_dir
    from model.loading import load_model

    source = args.model or str(demo_checkpoint_dir())
    loaded = load_model(source, device=args.device, quantization=args.quantization)
    frames = int(args.reply_s / FRAME_S)
    result: dict[str, Any] = {
        "model": "demo" if loaded.is_demo else source,
        "device": torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"cpu x{torch.get_num_threads()}",
        "quantization": loaded.quantization,
    }
    with torch.inference_mode():
        result.update(first_audio(loaded, frames=frames, text_tokens=max(8, frames // 3)))
        result.update(transcription(loaded, frames=frames, text_tokens=max(8, frames // 3)))
        result.update(first_audio_video(loaded, frames=frames, text_tokens=max(8, frames // 3)))
        result.update(first_audio_screen(loaded, frames=frames, text_tokens=max(8, frames // 3)))
        result.update(code2wav_constancy(loaded, args.long_reply_s, chunk_frames=4))
        result.update(prefill_growth(loaded, args.turns))
        result.update(cancel_latency(loaded, args.cancel_trials))
        result.update(tool_roundtrip(lambda **kw: make_engine(loaded, **kw), args.tool_trials))
        result.update(spoken_notice(lambda **kw: make_engine(loaded, **kw), args.tool_trials))
        result.update(incremental_prefill(loaded, args.turn_lengths_s, headline_s=20.0))
    print(json.dumps(result, indent=2, default=lambda v: round(v, 3)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
