"""Audio I/O benchmark on virtual devices (private PulseAudio servers, as in tests/audio).

    python -m bench.audio --json [--quick]

Prints microphone_delivery_ms (a click into the microphone to its frame out of the Microphone, the
stream at 16 kHz) against microphone_delivery_ms_resampled_here (at the device's rate, soxr converting),
barge_in_ms_median / barge_in_ms_max (user speech onset at the microphone to silence at the
loudspeaker monitor), underruns (playback while a CPU-heavy torch loop runs in another thread),
self_interruptions_per_min (the assistant's speech looped from the speaker into the microphone with
delay and gain, AEC on) and echo_attenuation_db (microphone level in / out of the echo canceller);
player_stream_restarts counts the watchdog's restarts of that player's stream over those sections.
Then the echo grid and faults (`bench.rig.echo`, a fresh canceller per cell as an app starting up,
barge-in recovering by "pause" as the app does): self_interruptions_per_min_worst and
echo_attenuation_db_min over echo paths x gains, barge_in_ms_max_double_talk (the user talking over a
reply whose echo is being cancelled: onset at the microphone to the moment the loudspeaker went
silent, which is the pause, not the cut 700 ms later), echo_grid_cells_with_clock_moves (cells the
devices' clocks moved in, as an underrun does: counted, and left in the figures above; each cell
also counts its path_moves, the rig's own echo path moving under jitter, which the hold must find,
and its notes say why a user was missed; echo_attenuation_db_min_unmoved is the minimum over the
cells where neither moved, the fixed paths),
echo_attenuation_db_after_path_move (the echo path 6 and 26 ms shorter mid-reply, no clock showing
it), aec_recovered_s_after_reopen (output sink unloaded and reloaded mid-reply) and
output_gap_ms_max_after_stall (150 ms stalls of the process mid-reply, GIL held and SIGSTOP).
gc_full_collection_ms_max / gc_full_collections: the longest full garbage collection over those echo
sections (each holds the GIL, so every audio callback waits), with what has been made so far frozen
as the app freezes it once its window is up; gc_full_collection_ms_unfrozen: one collection of the
same process just before that freeze, the baseline.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any

import numpy as np


def _cpu_hog(stop: threading.Event) -> None:
    try:
        import torch

        a = torch.randn(512, 512)
        while not stop.is_set():
            a = torch.tanh(a @ a.T / 512)
    except ImportError:
        b = np.random.default_rng(0).standard_normal((512, 512))
        while not stop.is_set():
            b = np.tanh(b @ b.T / 512)


def run(quick: bool) -> dict[str, Any]:
    from audio_io.playback import Player, PlayerConfig
    from bench.rig.pulse import SPEAKER, VirtualAudio, wait_flowing

    result: dict[str, Any] = {"quick": quick}
    with VirtualAudio() as audio:
        events: list[object] = []
        player = Player(PlayerConfig(device=SPEAKER), on_event=events.append)
        player.start()
        wait_flowing(player._progress)
        result.update(microphone_delivery(quick))
        result.update(barge_in_latency(player, quick))
        result.update(underruns_under_load(player, quick))
        result.update(self_interruptions(player, quick))
        result["player_stream_restarts"] = _restarts(events)
        player.stop()
        result.update(run_echo(quick, audio))
    return result


def microphone_delivery(quick: bool) -> dict[str, Any]:
    """A click played into the microphone to its first 10 ms frame out of `Microphone.frames`, median
    over clicks: the stream at 16 kHz (the sound server converts as it captures), then at the
    device's own rate (soxr converts here, as for a device that takes no other)."""
    from audio_io.formats import MIC_RATE_HZ
    from audio_io.microphone import Microphone, MicrophoneConfig
    from bench.rig.pulse import MIC, MIC_FEED, Feeder, wait_flowing

    feeder = Feeder(MIC_FEED)
    rates = {"microphone_delivery_ms": MIC_RATE_HZ, "microphone_delivery_ms_resampled_here": None}
    result: dict[str, Any] = {}
    try:
        for key, rate in rates.items():
            with Microphone(MicrophoneConfig(device=MIC, rate_hz=rate)) as mic:
                wait_flowing(mic.frames.qsize, blocks=30)
                delays = [_click_delay_ms(mic, feeder) for _ in range(8 if quick else 20)]
            heard = [d for d in delays if d is not None]
            result[key] = round(float(np.median(heard)), 1) if heard else None
    finally:
        feeder.close()
    return result


def _click_delay_ms(mic: Any, feeder: Any) -> float | None:
    """ms from the feeder playing a 10 ms click to the microphone's first frame holding it."""
    import queue

    from bench.rig.pulse import SINK_RATE_HZ

    click = np.zeros(int(0.05 * SINK_RATE_HZ), np.float32)
    click[: int(0.01 * SINK_RATE_HZ)] = 0.5
    while not mic.frames.empty():
        mic.frames.get_nowait()
    started = feeder.play(click)
    deadline = time.perf_counter() + 1.0
    delay = None
    while delay is None and time.perf_counter() < deadline:
        try:
            frame = mic.frames.get(timeout=0.05)
        except queue.Empty:
            continue
        if np.abs(frame.pcm).max() > 8000 and started:
            delay = (time.perf_counter() - started[0]) * 1000
    time.sleep(0.2)  # the click played out before the next
    return delay


def barge_in_latency(player: Any, quick: bool) -> dict[str, Any]:
    """User speech onset at the microphone to silence at the loudspeaker monitor, over replies."""
    from audio_io.barge_in import BargeInConfig, BargeInMonitor
    from audio_io.formats import PLAYBACK_RATE_HZ
    from audio_io.turn_detector import TurnDetector
    from bench.rig.listening import Listening, play_reply
    from bench.rig.pulse import MIC_FEED, SINK_RATE_HZ, SPEAKER_MONITOR, Feeder, Recorder
    from bench.rig.signals import harmonic_voice, speech
    from events import BargeIn

    trials = 6 if quick else 20
    latencies: list[float] = []
    user = speech("Wait, stop please", SINK_RATE_HZ)
    feeder = Feeder(MIC_FEED)
    monitor = Recorder(SPEAKER_MONITOR, rate_hz=PLAYBACK_RATE_HZ)
    with Listening(TurnDetector(), barge_in=BargeInMonitor(player, BargeInConfig())) as listening:
        for trial in range(trials):
            reply = harmonic_voice(6.0, PLAYBACK_RATE_HZ)
            play_reply(player, 100 + trial, reply, PLAYBACK_RATE_HZ)
            time.sleep(1.0 + 0.1 * (trial % 5))
            before = len(listening.of_type(BargeIn))
            onset = feeder.play(user)
            deadline = time.monotonic() + 5
            while len(listening.of_type(BargeIn)) == before and time.monotonic() < deadline:
                time.sleep(0.01)
            while feeder.busy():
                time.sleep(0.02)
            time.sleep(0.3)
            recorded = monitor.samples()
            start = monitor.index_at(onset[0] - 1.0) if onset else 0
            loud = np.flatnonzero(np.abs(recorded[start:]) > 1e-3)
            if onset and len(loud):
                silent_s = monitor.time_of(start + int(loud[-1]) + 1)
                latencies.append((silent_s - onset[0]) * 1000)
            player.flush()
    feeder.close()
    monitor.close()
    return {
        "barge_in_trials": len(latencies),
        "barge_in_ms_median": round(float(np.median(latencies)), 1) if latencies else None,
        "barge_in_ms_max": round(float(np.max(latencies)), 1) if latencies else None,
    }


def underruns_under_load(player: Any, quick: bool) -> dict[str, Any]:
    """Playback underruns while a CPU-heavy torch loop runs in another thread."""
    from audio_io.formats import PLAYBACK_RATE_HZ
    from bench.rig.signals import harmonic_voice
    from events import AudioChunk

    seconds = 60 if quick else 300
    stop = threading.Event()
    hog = threading.Thread(target=_cpu_hog, args=(stop,), daemon=True)
    hog.start()
    before = player.underruns
    signal = harmonic_voice(10.0, PLAYBACK_RATE_HZ)
    turn = 1000
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:  # an engine writing 80 ms chunks a little ahead of real time
        player.start_turn(turn)
        for k, s in enumerate(range(0, len(signal), 1920)):
            player.write(AudioChunk(turn, signal[s : s + 1920], PLAYBACK_RATE_HZ, k))
            time.sleep(0.06)
        player.finish_turn(turn)
        player.wait_idle(15)
        turn += 1
    stop.set()
    hog.join()
    return {"underruns": player.underruns - before, "underrun_playback_s": seconds}


def self_interruptions(player: Any, quick: bool) -> dict[str, Any]:
    """The assistant's speech looped from the speaker into the microphone (40 ms, gain 0.5), AEC on:
    barge-ins per minute of speech, and the canceller's attenuation."""
    from audio_io.barge_in import BargeInConfig, BargeInMonitor
    from audio_io.echo_canceller import EchoCancellerConfig
    from audio_io.formats import PLAYBACK_RATE_HZ
    from audio_io.microphone import MicrophoneConfig
    from audio_io.turn_detector import TurnDetector
    from bench.rig.echo_path import EchoPath
    from bench.rig.listening import Listening, MeasuredEchoCanceller, play_reply
    from bench.rig.pulse import MIC
    from bench.rig.signals import speech
    from events import BargeIn

    echo_s = 20 if quick else 60
    path = EchoPath(delay_ms=40, gain=0.5)
    barge_in = BargeInMonitor(player, BargeInConfig())
    listening = Listening(TurnDetector(), barge_in=barge_in, mic_config=MicrophoneConfig(device=MIC))
    echo = MeasuredEchoCanceller(EchoCancellerConfig(enabled=True), player, input_latency_s=0.0)
    listening.loop.echo = echo
    sentences = [
        "Sure, here is a long answer about the weather tomorrow.",
        "It will be sunny in the morning and rainy in the evening.",
        "Take an umbrella if you go out after six.",
    ]
    reply = np.concatenate([speech(t, PLAYBACK_RATE_HZ) for t in sentences])
    with listening:
        played = 0.0
        turn = 2000
        while played < echo_s:
            play_reply(player, turn, reply, PLAYBACK_RATE_HZ)
            player.wait_idle(60)
            played += len(reply) / PLAYBACK_RATE_HZ
            turn += 1
        interruptions = len(listening.of_type(BargeIn))
    path.close()
    attenuation_db = echo.attenuation_db()
    return {
        "self_interruptions_per_min": round(interruptions / (played / 60), 2),
        "echo_attenuation_db": round(attenuation_db, 1) if attenuation_db is not None else None,
        "echo_s": round(played, 1),
        "output_latency_ms": round(player.latency_s * 1000, 1),
    }


def run_echo(quick: bool, audio: Any) -> dict[str, Any]:
    """The echo grid, then a reopened output and stalls, in one rig (virtual devices already up)."""
    from bench.rig.echo import GRID_DELAYS_MS, GRID_GAINS, EchoRig
    from bench.rig.gc_watch import FullCollections, full_collection_ms

    delays = (20, 150, 500) if quick else GRID_DELAYS_MS
    gains = (0.25, 1.0) if quick else GRID_GAINS
    result: dict[str, Any] = {"gc_full_collection_ms_unfrozen": round(full_collection_ms(), 1)}
    with EchoRig() as rig, FullCollections() as full:
        grid = [rig.condition(d, g) for d in delays for g in gains]
        result["echo_grid"] = [
            {
                "delay_ms": c.delay_ms,
                "gain": c.gain,
                "self_interruptions_per_min": round(c.self_interruptions_per_min, 1),
                "self_pauses": c.self_pauses,
                "attenuation_db": _round(c.attenuation_db),
                "user_barge_in": c.user_barge_in,
                "barge_in_ms": _round(c.barge_in_ms),
                "clock_moves": c.clock_moves,
                "path_moves": c.path_moves,
                "dropouts": c.dropouts,
                "notes": c.notes,
            }
            for c in grid
        ]
        result["echo_grid_cells_with_clock_moves"] = sum(c.clock_moves > 0 for c in grid)
        result["self_interruptions_per_min_worst"] = round(max(c.self_interruptions_per_min for c in grid), 2)
        result["echo_attenuation_db_min"] = _round(min((c.attenuation_db or 0.0) for c in grid))
        still = [c.attenuation_db or 0.0 for c in grid if not (c.clock_moves or c.path_moves or c.dropouts)]
        result["echo_attenuation_db_min_unmoved"] = _round(min(still)) if still else None
        talked_over = [c.barge_in_ms for c in grid if c.barge_in_ms is not None]
        worst, middle = (max(talked_over), float(np.median(talked_over))) if talked_over else (None, None)
        result["barge_in_ms_max_double_talk"] = _round(worst)
        result["barge_in_ms_median_double_talk"] = _round(middle)
        result["user_barge_ins_missed"] = sum(not c.user_barge_in for c in grid)
        result["self_pauses_worst"] = max(c.self_pauses for c in grid)
        result["echo_attenuation_db_after_path_move"] = _shortened_paths(rig)
        result["aec_recovered_s_after_reopen"] = _reopen(rig, audio)
        assert rig.echo is not None  # each condition set one up
        pauses, dropouts = rig.acted.pauses, rig.echo.dropouts
        gap_ms, interrupted = _stalls(rig)
        result["output_gap_ms_max_after_stall"] = gap_ms
        result["self_interruptions_after_stall"] = interrupted
        result["self_pauses_after_stall"] = rig.acted.pauses - pauses
        result["dropouts_in_stalls"] = rig.echo.dropouts - dropouts
        result["output_stream_restarts"] = _restarts(rig.player_events)
    result["gc_full_collection_ms_max"] = round(full.max_ms, 1)
    result["gc_full_collections"] = full.count
    return result


def _shortened_paths(rig: Any) -> float | None:
    """The echo path made 6, then 26 ms shorter 3 s into a reply, no clock showing it (a host or a
    microphone dropping that much): the worst attenuation from 0.5 to 2.5 s after the move."""
    worst: float | None = None
    for shorter_ms in (6, 26):
        rig.condition(150, 1.0, replies=2, user=False)
        after = rig.shorten_mid_reply(shorter_ms).attenuation_db or 0.0
        worst = after if worst is None else min(worst, after)
    return _round(worst)


def _reopen(rig: Any, audio: Any) -> float | None:
    """Speaker sink unloaded 1.5 s into a reply and loaded again; seconds from the first echo after
    it until attenuation >= 20 dB held for 2 s (`first_held`; None: not within the replies played)."""
    from audio_io.formats import PLAYBACK_RATE_HZ
    from bench.rig.listening import play_reply
    from bench.rig.pulse import wait_flowing

    rig.condition(150, 0.5, replies=1, user=False)
    play_reply(rig.player, rig.next_turn(), np.concatenate(rig.replies), PLAYBACK_RATE_HZ)
    time.sleep(1.5)
    audio.unload_sink("speaker")
    time.sleep(1.0)
    audio.load_sink("speaker")
    wait_flowing(rig.player._progress, timeout_s=20)
    rig.speaker_back()
    back_s = time.perf_counter()
    for reply in rig.replies:
        rig.play(reply)
    return _round(rig.echo.recovered_s(back_s))


def _stalls(rig: Any) -> tuple[float, int]:
    """Longest silence on the speaker inside replies with a 150 ms stall (GIL held, then SIGSTOP),
    and how many of those replies interrupted themselves (up to where one did: the silence after
    such a barge-in is the flush, not a gap)."""
    from audio_io.formats import PLAYBACK_RATE_HZ
    from bench.rig.echo import hold_gil, stop_process
    from bench.rig.listening import play_reply
    from bench.rig.signals import harmonic_voice

    gaps, interrupted = [], 0
    for stall in (hold_gil, stop_process, hold_gil, stop_process):
        turn_id = rig.next_turn()
        reply = harmonic_voice(4.0, PLAYBACK_RATE_HZ)
        writer = threading.Thread(target=play_reply, args=(rig.player, turn_id, reply, PLAYBACK_RATE_HZ))
        writer.start()
        time.sleep(0.5)
        start_s = time.perf_counter()
        time.sleep(1.0)
        stall(0.15)
        writer.join()
        rig.player.wait_idle(20)
        end_s = time.perf_counter() - 0.2
        cut = rig.barge_ins([turn_id])
        if cut:
            interrupted += 1
            end_s = min(end_s, start_s - 0.5 + cut[0].heard_samples / PLAYBACK_RATE_HZ - 0.1)
        if end_s > start_s:
            gaps.append(rig.longest_gap_ms(start_s, end_s))
        time.sleep(0.5)
    return round(max(gaps, default=0.0), 1), interrupted


def _restarts(player_events: list[object]) -> int:
    """Times the watchdog restarted the player's stream, as the player said (`StreamRestarted`)."""
    from audio_io.stream_keeper import StreamRestarted

    return sum(isinstance(event, StreamRestarted) for event in player_events)


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="under two minutes: fewer trials, same keys")
    args = parser.parse_args()
    result = run(args.quick)
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
