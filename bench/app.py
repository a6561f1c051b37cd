"""The whole app on virtual devices: `python -m bench.app --json [--trials N] [--screenshot PNG]`.

Runs the real `Desk` (window offscreen, the demo model, the real audio chain on two private
PulseAudio servers with null sinks, as in `tests/audio/pulse.py`) and speaks espeak-ng sentences
into the virtual microphone. Prints:

- `first_audio_ms`: end of the user's speech (as played into the microphone) to the first audio of
  the reply at the loudspeaker monitor, median over the turns, with `first_audio_stages_ms`: the
  end-of-turn wait, the hop to the worker, prefill, first text token, first codec frame, first
  Code2Wav chunk, and playback to the monitor; `first_audio_speculative_share`: of those turns, the
  share whose reply the engine had computed at the user's pause (`realtime/speculation.py`);
- `event_loop_max_stall_ms`: the Qt event loop's longest lateness (a 5 ms timer), while loading and
  while talking (goal <= 50);
- `barge_in_ms`: speech onset at the microphone to the last loud sample at the monitor before the
  next reply's audio, median over `--trials` barge-ins (goal <= 150), each on a reply that is playing;
- the same stalls and barge-ins with two CPU-bound processes running beside the app (`_under_load`);
- `protocol_overhead_ms`: first audio of a typed turn through the app's own engine process (the
  Realtime protocol over loopback) minus first audio of the same turn in this process, same seed,
  median over `--trials` pairs;
- `engine_restart_s`: SIGKILL of the engine process to the first audio of the next (typed) turn;
- `gc_full_collection_ms_max` / `gc_full_collections`: the longest full garbage collection (it holds
  the GIL, so the audio callbacks wait) from the window up to the end of the device recovery, what
  the app held then frozen as `run_desk` freezes it; `gc_full_collection_ms_unfrozen`: one before.

The app runs as the user gets it: the engine in its own process (`omnidesk serve`). Run it from the
repository root (it reuses the test rigs in `tests/audio/`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
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
        if os.environ.get("BENCH_DEBUG"):
            threading.Thread(target=self._watch, args=(threading.get_ident(),), daemon=True).start()

    def _watch(self, qt_thread: int) -> None:
        """BENCH_DEBUG: print where the Qt thread is while it is late, to find what stalls it."""
        import traceback

        while True:
            time.sleep(0.02)
            late = time.perf_counter() - self._last
            frame = sys._current_frames().get(qt_thread)
            if late > 0.08 and frame is not None:
                stack = "".join(traceback.format_stack(frame)[-6:])
                print(f"--- Qt thread late {late * 1000:.0f} ms:\n{stack}", file=sys.stderr, flush=True)
                if late > 0.25:  # who else runs Python meanwhile (a GIL holder shows up here)
                    names = {t.ident: t.name for t in threading.enumerate()}
                    for ident, other in sys._current_frames().items():
                        if ident not in (qt_thread, threading.get_ident()):
                            where = "".join(traceback.format_stack(other)[-2:])
                            print(f"  [{names.get(ident)}]\n{where}", file=sys.stderr, flush=True)
                time.sleep(0.1)

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
    timer.setInterval(20)  # the bench's own checks stay a small share of the Qt thread

    def check() -> None:
        if condition() or time.monotonic() > deadline:
            loop.quit()

    timer.timeout.connect(check)
    timer.start()
    if not condition():
        loop.exec()
    timer.stop()
    return condition()


class Rig:
    """The app on virtual devices, with what the benchmark watches."""

    def __init__(self, desk: Any, probe: StallProbe, monitor: Any, feeder: Any, rate_hz: int) -> None:
        self.desk, self.probe, self.monitor, self.feeder, self.rate_hz = desk, probe, monitor, feeder, rate_hz
        self.seen: dict[str, Any] = {
            "user": {},
            "stats": {},
            "interrupted": [],
            "first_audio": {},
            "devices": [],
        }
        desk.session.reported.connect(self._on_report)
        desk.engine.signals.reported.connect(self._on_report)

    def _on_report(self, event: object) -> None:
        from events import DeviceLost, DeviceRestored, FirstAudio, ReplyTruncated, TurnFinished, UserTurnSent

        match event:
            case UserTurnSent(turn_id):
                self.seen["user"][turn_id] = time.perf_counter()
            case TurnFinished(turn_id, stats):
                self.seen["stats"][turn_id] = stats
            case ReplyTruncated(turn_id):
                self.seen["interrupted"].append(turn_id)
            case FirstAudio(turn_id, written_s):
                self.seen["first_audio"][turn_id] = written_s
            case DeviceLost() | DeviceRestored():
                self.seen["devices"].append((time.perf_counter(), event))

    def loud_since(self, time_s: float) -> float | None:
        start = max(0, self.monitor.index_at(time_s))
        loud = np.flatnonzero(np.abs(self.monitor.samples_from(start)) > LOUD)
        return self.monitor.time_of(start + int(loud[0])) if loud.size else None

    def say(self, signal_: np.ndarray) -> tuple[float, float]:
        started = self.feeder.play(signal_)
        pump(lambda: bool(started) and not self.feeder.busy(), 30)
        return started[0], started[0] + len(signal_) / self.rate_hz


def first_audio(rig: Rig, sentence: np.ndarray, turns: int) -> dict[str, Any]:
    """End of speech to the reply at the loudspeaker, with the stages the app sees."""
    seen, rows = rig.seen, []
    for _ in range(turns):
        before = len(seen["user"])
        _, end_s = rig.say(sentence)
        pump(lambda: len(seen["user"]) > before, 30)  # noqa: B023
        turn_id = max(seen["user"])
        pump(lambda: turn_id in seen["stats"] and rig.loud_since(end_s) is not None, 120)  # noqa: B023
        heard_s, stats = rig.loud_since(end_s), seen["stats"].get(turn_id)
        written_s = seen["first_audio"].get(turn_id)
        if heard_s is None or stats is None or written_s is None or stats.first_text_s is None:
            continue
        user_s = seen["user"][turn_id]
        rows.append(
            {
                "end_of_turn_wait": user_s - end_s,
                "to_engine": stats.started_s - user_s,
                "first_text": stats.first_text_s - stats.started_s,
                "first_audio_written": written_s - stats.first_text_s,
                "playback_to_monitor": heard_s - written_s,
                "total": heard_s - end_s,
                "speculative": stats.speculative,
            }
        )
        pump(lambda: rig.desk.session.state.value == "listening", 120)
    if not rows:
        return {}
    best = min(rows, key=lambda row: row["total"])
    return {
        "first_audio_ms": round(statistics.median(r["total"] for r in rows) * 1000, 1),
        "first_audio_stages_ms": {
            k: round(v * 1000, 1) for k, v in best.items() if k not in ("total", "speculative")
        },
        "first_audio_turns": len(rows),
        "first_audio_speculative_share": sum(r["speculative"] for r in rows) / len(rows),
    }


def barge_ins(rig: Rig, sentences: list[np.ndarray], trials: int, screenshot: Path | None) -> dict[str, Any]:
    """Each interruption becomes the next turn, whose reply the next one interrupts."""
    seen, latencies = rig.seen, []
    rig.say(sentences[0])
    result: dict[str, Any] = {}
    for trial in range(trials):
        turn_id = max(seen["user"]) if seen["user"] else 0
        asked_s = seen["user"].get(turn_id, time.perf_counter())
        if not pump(lambda: rig.loud_since(asked_s + 0.05) is not None, 60):  # noqa: B023
            continue
        pump(lambda: False, 0.3 + 0.1 * (trial % 4))
        if screenshot is not None and trial == trials - 1:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            worst = rig.probe.max_stall_s
            rig.desk.window.grab().save(str(screenshot))  # the bench's own work: not the app's stall
            rig.probe.max_stall_s = worst
            rig.probe.restart()
            result["screenshot"] = str(screenshot)
        onset_s, _ = rig.say(sentences[1])
        pump(lambda: False, 0.3)
        start = max(0, rig.monitor.index_at(onset_s - 1.0))
        samples = rig.monitor.samples_from(start)
        # Up to the next reply's first audio: when `say` returned late under load, the reply to this
        # very sentence had started, and its sound counted as 2.3 to 2.6 s "barge-ins".
        later = [written_s for written_s in seen["first_audio"].values() if written_s > onset_s]
        if later:
            samples = samples[: max(0, rig.monitor.index_at(min(later)) - start)]
        loud = np.flatnonzero(np.abs(samples) > LOUD)
        last_loud_s = rig.monitor.time_of(start + int(loud[-1]) + 1) if loud.size else None
        if last_loud_s is not None and last_loud_s > onset_s:  # the reply was still playing at the onset
            latencies.append((last_loud_s - onset_s) * 1000)
        pump(lambda: bool(seen["user"]) and max(seen["user"]) > turn_id, 10)  # noqa: B023
    result["barge_in_trials"] = len(latencies)
    result["barge_in_interrupted_replies"] = len(set(seen["interrupted"]))
    result["barge_in_ms"] = round(float(np.median(latencies)), 1) if latencies else None
    result["barge_in_ms_max"] = round(float(np.max(latencies)), 1) if latencies else None
    return result


def load_and_talk(
    rig: Rig, sentences: list[np.ndarray], trials: int, screenshot: Path | None, *, reload: bool
) -> dict[str, Any]:
    """(Re)load the demo in the app's engine process, then talk and barge in; stalls of each phase."""
    session = rig.desk.session
    rig.probe.reset()
    if reload:
        rig.desk.load_model("", demo=True)
    if not pump(lambda: session.model_info is not None and not session.loading, 240):
        raise RuntimeError("the demo model did not load")
    result: dict[str, Any] = {"event_loop_max_stall_ms_loading": round(rig.probe.reset() * 1000, 1)}
    result |= first_audio(rig, sentences[0], 2)
    result |= barge_ins(rig, sentences, trials, screenshot)
    result["event_loop_max_stall_ms_talking"] = round(rig.probe.reset() * 1000, 1)
    return result


def cpu_hogs(count: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def run(trials: int, screenshot: Path | None) -> dict[str, Any]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(prefix="omnidesk-bench-"))
    os.environ["OMNIDESK_CONFIG_DIR"] = str(work / "config")
    os.environ["OMNIDESK_DATA_DIR"] = str(work / "data")
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # the engine process finds the demo model here
    from PySide6.QtWidgets import QApplication

    from app import config as cfg
    from app.desk import Desk
    from app.launch import Launch
    from audio_io.gc_freeze import long_lived_frozen
    from bench.rig.gc_watch import FullCollections, full_collection_ms
    from bench.rig.pulse import (
        MIC,
        MIC_FEED,
        SINK_RATE_HZ,
        SPEAKER,
        SPEAKER_MONITOR,
        Feeder,
        Recorder,
        VirtualAudio,
    )
    from bench.rig.signals import speech
    from model.demo import build_demo_checkpoint

    demo_dir = build_demo_checkpoint(work / "demo")
    shutil.copytree(demo_dir, work / "cache" / "omnidesk" / "demo-model")
    sentences = [speech(text, SINK_RATE_HZ) for text in ("Hello, how are you today?", "Wait, stop please.")]
    result: dict[str, Any] = {"device": "cpu", "model": "demo", "engine": "child process"}
    with VirtualAudio() as audio:
        qapp = QApplication.instance() or QApplication([])
        config = cfg.with_changes(cfg.Config(), audio={"input_device": MIC, "output_device": SPEAKER})
        launch = Launch(cfg.LoadedConfig(config, work / "config" / "config.toml"), demo=True)
        monitor, feeder = Recorder(SPEAKER_MONITOR), Feeder(MIC_FEED)
        probe = StallProbe()
        probe.start()
        built_s = time.perf_counter()
        desk = Desk(launch)
        desk.start()
        rig = Rig(desk, probe, monitor, feeder, SINK_RATE_HZ)
        qapp.processEvents()
        result["window_shown_ms"] = round((time.perf_counter() - built_s) * 1000, 1)
        result["gc_full_collection_ms_unfrozen"] = round(full_collection_ms(), 1)
        probe.reset()  # from here the window is up: what the user waits on is the event loop
        probe.restart()
        with long_lived_frozen(), FullCollections() as full:  # frozen as `run_desk` does
            result |= load_and_talk(rig, sentences, trials, screenshot, reload=False)
            hogs = cpu_hogs(2)
            try:
                loaded = load_and_talk(rig, sentences, trials, None, reload=True)
            finally:
                for hog in hogs:
                    hog.kill()
                    hog.wait()
            result |= {
                f"{key}_under_load": value for key, value in loaded.items() if not isinstance(value, dict)
            }
            result["engine_restart_s"] = engine_restart(rig)
            rig.monitor.close()
            rig.feeder.close()
            result |= device_recovery(rig, audio, cycles=5)
        result["gc_full_collection_ms_max"] = round(full.max_ms, 1)
        result["gc_full_collections"] = full.count
        result["event_loop_max_stall_ms"] = max(
            result["event_loop_max_stall_ms_loading"], result["event_loop_max_stall_ms_talking"]
        )
        desk.window.close()
        qapp.processEvents()
        desk.shutdown()  # as `run_desk` does
    from bench.protocol import protocol_overhead

    result |= protocol_overhead(demo_dir, trials)
    return result


def device_recovery(rig: Rig, audio: Any, cycles: int) -> dict[str, Any]:
    """Unplug and replug the speaker, then the microphone (unload and load their null sinks):
    seconds from the device back to the app saying it works again (its stream reopened and
    started), median over `cycles` each."""
    from events import DeviceLost, DeviceRestored

    def seen(kind: type, device: str, since: float) -> float | None:
        found = [
            t
            for t, e in rig.seen["devices"]
            if isinstance(e, kind) and getattr(e, "kind", "") == device and t >= since
        ]
        return float(found[0]) if found else None

    def seen_after(kind: type, device: str, since: float) -> Callable[[], bool]:
        return lambda: seen(kind, device, since) is not None

    result: dict[str, Any] = {}
    for sink, device in (("speaker", "output"), ("mic", "input")):
        times: list[float] = []
        for _ in range(cycles):
            unplugged = time.perf_counter()
            audio.unload_sink(sink)
            pump(seen_after(DeviceLost, device, unplugged), 30)
            back = time.perf_counter()
            audio.load_sink(sink)
            if pump(seen_after(DeviceRestored, device, back), 30):
                times.append(float(seen(DeviceRestored, device, back) or back) - back)
        result[f"device_recovery_s_{device}"] = round(statistics.median(times), 2) if times else None
    both = [v for v in result.values() if v is not None]
    result["device_recovery_s"] = max(both) if both else None
    return result


def engine_restart(rig: Rig) -> float | None:
    """SIGKILL of the engine process to the first audio written of a turn typed right after it."""
    engine = rig.desk.engine
    local = getattr(engine, "local", None)
    if local is None or local.pid is None:
        return None
    pump(lambda: rig.desk.session.state.value == "listening", 60)
    killed_s = time.perf_counter()
    os.kill(local.pid, signal.SIGKILL)
    turn_id = rig.desk.session.send_text("Are you back?")
    if turn_id is None or not pump(lambda: turn_id in rig.seen["first_audio"], 240):
        return None
    return round(rig.seen["first_audio"][turn_id] - killed_s, 2)


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
