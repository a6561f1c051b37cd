"""The whole app on virtual devices: `python -m bench.app --json [--trials N] [--screenshot PNG]`.

Runs the real `Desk` (window offscreen, the demo model, the real audio chain on two private
PulseAudio servers with null sinks, as in `tests/audio/pulse.py`) and speaks espeak-ng sentences
into the virtual microphone. Prints:

- `first_audio_ms`: end of the user's speech (as played into the microphone) to the first audio of
  the reply at the loudspeaker monitor, median over the turns, with `first_audio_stages_ms`: the
  end-of-turn wait, the hop to the worker, prefill, first text token, first codec frame, first
  Code2Wav chunk, and playback to the monitor;
- `event_loop_max_stall_ms`: the Qt event loop's longest lateness (a 5 ms timer), while loading and
  while talking (goal <= 50);
- `barge_in_ms`: speech onset at the microphone to the last loud sample at the monitor, median over
  `--trials` barge-ins (goal <= 150), each on a reply that is playing.

Run it from the repository root (it reuses the test rigs in `tests/audio/`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

LOUD = 1e-3


class StallProbe:
    """A 5 ms timer on the Qt thread; its worst lateness is the event loop's longest stall."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.interval_s = 0.005
        self.max_stall_s = 0.0
        self._last = time.perf_counter()
        self._timer = QTimer()
        self._timer.setInterval(int(self.interval_s * 1000))
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self._last = time.perf_counter()
        self._timer.start()

    def restart(self) -> None:
        self._last = time.perf_counter()

    def reset(self) -> float:
        worst, self.max_stall_s = self.max_stall_s, 0.0
        return worst

    def _tick(self) -> None:
        now = time.perf_counter()
        stall = now - self._last - self.interval_s
        if stall > 0.1 and os.environ.get("BENCH_DEBUG"):
            print(f"stall {stall * 1000:.0f} ms at {now:.3f}", file=sys.stderr, flush=True)
        self.max_stall_s = max(self.max_stall_s, stall)
        self._last = now


def pump(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Run the Qt event loop until `condition()` or the timeout (never sleeping on the Qt thread)."""
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.monotonic() + timeout_s
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(5)

    def check() -> None:
        if condition() or time.monotonic() > deadline:
            loop.quit()

    timer.timeout.connect(check)
    timer.start()
    if not condition():
        loop.exec()
    timer.stop()
    return condition()


def run(trials: int, screenshot: Path | None) -> dict[str, Any]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(prefix="omnidesk-bench-"))
    os.environ["OMNIDESK_CONFIG_DIR"] = str(work / "config")
    os.environ["OMNIDESK_DATA_DIR"] = str(work / "data")
    from PySide6.QtWidgets import QApplication

    from app import config as cfg
    from app.desk import Desk
    from app.launch import Launch
    from model.demo import build_demo_checkpoint
    from tests.audio.pulse import (
        MIC,
        MIC_FEED,
        SINK_RATE_HZ,
        SPEAKER,
        SPEAKER_MONITOR,
        Feeder,
        Recorder,
        VirtualAudio,
        speech,
    )

    demo_dir = build_demo_checkpoint(work / "demo")
    sentences = [speech(text, SINK_RATE_HZ) for text in ("Hello, how are you today?", "Wait, stop please.")]
    result: dict[str, Any] = {"device": "cpu", "model": "demo"}
    with VirtualAudio():
        qapp = QApplication.instance() or QApplication([])
        config = cfg.with_changes(cfg.Config(), audio={"input_device": MIC, "output_device": SPEAKER})
        launch = Launch(cfg.LoadedConfig(config, work / "config" / "config.toml"), demo=True)
        monitor, feeder = Recorder(SPEAKER_MONITOR), Feeder(MIC_FEED)
        probe = StallProbe()
        probe.start()
        t0 = time.perf_counter()
        desk = Desk(launch, demo_dir=lambda: demo_dir)
        t1 = time.perf_counter()
        desk.start()
        if os.environ.get("BENCH_DEBUG"):
            print(f"desk built {t0:.3f} in {t1 - t0:.3f} s, started in {time.perf_counter() - t1:.3f} s")
        session = desk.session
        seen: dict[str, Any] = {"user": {}, "stats": {}, "interrupted": []}
        session.user_turn.connect(lambda t, _text, _s: seen["user"].__setitem__(t, time.perf_counter()))
        session.reply_finished.connect(lambda t, stats: seen["stats"].__setitem__(t, stats))
        session.reply_interrupted.connect(lambda t, _text: seen["interrupted"].append(t))
        if not pump(lambda: session.model_info is not None, 180):
            raise RuntimeError("the demo model did not load")
        result["event_loop_max_stall_ms_loading"] = round(probe.reset() * 1000, 1)

        def loud_since(time_s: float) -> float | None:
            samples = monitor.samples()
            start = max(0, monitor.index_at(time_s))
            loud = np.flatnonzero(np.abs(samples[start:]) > LOUD)
            return monitor.time_of(start + int(loud[0])) if loud.size else None

        def new_turn_after(count: int) -> Callable[[], bool]:
            return lambda: len(seen["user"]) > count

        def turn_beyond(turn_id: int) -> Callable[[], bool]:
            return lambda: bool(seen["user"]) and max(seen["user"]) > turn_id

        def reply_heard(turn_id: int, since_s: float) -> Callable[[], bool]:
            return lambda: turn_id in seen["stats"] and loud_since(since_s) is not None

        def heard_since(time_s: float) -> Callable[[], bool]:
            return lambda: loud_since(time_s) is not None

        def say(signal: np.ndarray) -> tuple[float, float]:
            started = feeder.play(signal)
            pump(lambda: bool(started) and not feeder.busy(), 30)
            return started[0], started[0] + len(signal) / SINK_RATE_HZ

        # First audio: one full turn, heard to its end.
        first_audio: list[dict[str, float]] = []
        for _ in range(2):
            turns_before = len(seen["user"])
            _, end_s = say(sentences[0])
            pump(new_turn_after(turns_before), 30)
            turn_id = max(seen["user"])
            pump(reply_heard(turn_id, end_s), 120)
            heard_s = loud_since(end_s)
            stats = seen["stats"].get(turn_id)
            if heard_s is None or stats is None:
                continue
            user_s = seen["user"][turn_id]
            first_audio.append(
                {
                    "end_of_turn_wait": user_s - end_s,
                    "to_worker": stats.started_s - user_s,
                    "prefill": stats.prefill_done_s - stats.started_s,
                    "first_text_token": stats.first_text_s - stats.prefill_done_s,
                    "first_codec_frame": stats.first_frame_s - stats.first_text_s,
                    "first_code2wav_chunk": stats.first_audio_s - stats.first_frame_s,
                    "playback_to_monitor": heard_s - stats.first_audio_s,
                    "total": heard_s - end_s,
                }
            )
            pump(lambda: session.state.value == "listening", 120)
        if first_audio:
            best = min(first_audio, key=lambda row: row["total"])
            result["first_audio_ms"] = round(statistics.median(r["total"] for r in first_audio) * 1000, 1)
            result["first_audio_stages_ms"] = {k: round(v * 1000, 1) for k, v in best.items() if k != "total"}
            result["first_audio_turns"] = len(first_audio)

        # Barge-in: each interruption becomes the next turn, whose reply the next one interrupts.
        latencies: list[float] = []
        say(sentences[0])
        for trial in range(trials):
            turn_id = max(seen["user"]) if seen["user"] else 0
            asked_s = seen["user"].get(turn_id, time.perf_counter())
            if not pump(heard_since(asked_s + 0.05), 60):
                continue
            pump(lambda: False, 0.3 + 0.1 * (trial % 4))
            if screenshot is not None and trial == trials - 1:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                worst = probe.max_stall_s
                desk.window.grab().save(str(screenshot))  # the bench's own work: not the app's stall
                probe.max_stall_s = worst
                probe.restart()
                result["screenshot"] = str(screenshot)
            onset_s, _ = say(sentences[1])
            pump(lambda: False, 0.3)
            samples = monitor.samples()
            start = max(0, monitor.index_at(onset_s - 1.0))
            loud = np.flatnonzero(np.abs(samples[start:]) > LOUD)
            if loud.size:
                latencies.append((monitor.time_of(start + int(loud[-1]) + 1) - onset_s) * 1000)
            pump(turn_beyond(turn_id), 10)
        result["barge_in_trials"] = len(latencies)
        result["barge_in_interrupted_replies"] = len(set(seen["interrupted"]))
        result["barge_in_ms"] = round(float(np.median(latencies)), 1) if latencies else None
        result["barge_in_ms_max"] = round(float(np.max(latencies)), 1) if latencies else None
        result["event_loop_max_stall_ms_talking"] = round(probe.reset() * 1000, 1)
        result["event_loop_max_stall_ms"] = max(
            result["event_loop_max_stall_ms_loading"], result["event_loop_max_stall_ms_talking"]
        )
        desk.window.close()
        qapp.processEvents()
        monitor.close()
        feeder.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--trials", type=int, default=10, help="barge-ins to time (default 10)")
    parser.add_argument("--screenshot", type=Path, help="save the window mid-conversation to this PNG")
    args = parser.parse_args()
    result = run(args.trials, args.screenshot)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
