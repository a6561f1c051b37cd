"""Test rigs wiring the real audio_io parts to the virtual devices."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from audio_io.audio_loop import AudioLoop
from audio_io.barge_in import BargeInMonitor
from audio_io.echo_canceller import EchoCanceller
from audio_io.echo_state import EVIDENCE_MARGIN_DB, EchoState
from audio_io.formats import MIC_FRAME_SAMPLES, MIC_RATE_HZ
from audio_io.microphone import MicFrame, Microphone, MicrophoneConfig
from audio_io.playback import Player
from audio_io.turn_detector import TurnDetector
from bench.rig.pulse import MIC, wait_flowing
from bench.rig.signals import find_offset


class Listening:
    """Microphone on the virtual mic → AudioLoop; keeps every cleaned frame and every event."""

    def __init__(
        self,
        turns: TurnDetector,
        *,
        echo: EchoCanceller | None = None,
        barge_in: BargeInMonitor | None = None,
        mic_config: MicrophoneConfig | None = None,
    ) -> None:
        self.frames: list[MicFrame] = []
        self.events: list[tuple[int, object]] = []  # (index of the last frame seen, event)
        self._lock = threading.Lock()
        self.mic = Microphone(mic_config or MicrophoneConfig(device=MIC), on_event=self._on_event)
        self.loop = AudioLoop(
            self.mic, turns, self._on_event, echo=echo, barge_in=barge_in, on_frame=self._on_frame
        )

    def __enter__(self) -> Listening:
        self.mic.start()
        wait_flowing(lambda: self.mic.frames.qsize(), blocks=30)
        self.loop.start()
        wait_flowing(lambda: len(self.frames), blocks=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.stop()
        self.mic.stop()

    def _on_frame(self, frame: MicFrame) -> None:
        with self._lock:
            self.frames.append(frame)

    def _on_event(self, event: object) -> None:
        with self._lock:
            last = self.frames[-1].index if self.frames else -1
            self.events.append((last, event))

    def of_type(self, kind: type) -> list[Any]:
        with self._lock:
            return [e for _, e in self.events if isinstance(e, kind)]

    def wait_for(self, kind: type, count: int = 1, timeout_s: float = 30.0) -> list[Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(self.of_type(kind)) < count:
            time.sleep(0.02)
        return self.of_type(kind)

    def recording(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(16 kHz int16 audio, frame indices, frame times) of everything processed so far."""
        with self._lock:
            frames = list(self.frames)
        audio = np.concatenate([f.pcm for f in frames])
        return audio, np.array([f.index for f in frames]), np.array([f.time_s for f in frames])

    def locate(self, signal_16k: np.ndarray) -> tuple[int, float]:
        """Sample offset of `signal_16k` in the recording, and the match quality."""
        audio, _, _ = self.recording()
        return find_offset(audio.astype(np.float32) / 32768, signal_16k)

    def sample_at(self, time_s: float) -> int:
        """Recording sample index of a perf_counter time given by an event."""
        _, _, times = self.recording()
        k = int(np.argmin(np.abs(times - time_s)))
        return k * MIC_FRAME_SAMPLES + round((time_s - times[k]) * MIC_RATE_HZ)


class MeasuredEchoCanceller(EchoCanceller):
    """An echo canceller that sums the energy of the frames carrying echo, before and after it, and
    keeps what it told barge-in of each frame."""

    ECHO_POWER = 1e4  # mean square of int16 samples (-50 dBFS): a frame louder than this carries echo

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.energy_in = self.energy_out = 0.0
        self.echo_frames: list[tuple[float, float, float]] = []  # (time_s, power in, power out)
        self.states: list[tuple[float, EchoState]] = []

    def process(self, frame: np.ndarray, time_s: float | None = None) -> np.ndarray:
        out = super().process(frame, time_s)
        self.states.append((time_s or 0.0, self.state))
        power = float(np.mean(frame.astype(np.float64) ** 2))
        if power > self.ECHO_POWER:
            power_out = float(np.mean(out.astype(np.float64) ** 2))
            self.energy_in += power
            self.energy_out += power_out
            self.echo_frames.append((time_s or 0.0, power, power_out))
        return out

    def recovered_s(
        self, since_s: float, min_db: float = 20.0, bin_s: float = 0.5, hold_s: float = 2.0
    ) -> float | None:
        """Seconds from the first echo after `since_s` until the echo was `min_db` down and stayed so."""
        return first_held(self.attenuation_bins(since_s, bin_s), bin_s, min_db, hold_s)

    def attenuation_bins(self, since_s: float, bin_s: float = 0.5) -> list[float | None]:
        """The attenuation in each `bin_s` from the first echo after `since_s` to the last echo."""
        times = [f[0] for f in self.echo_frames if f[0] >= since_s]
        if not times:
            return []
        starts = [times[0] + k * bin_s for k in range(int((times[-1] - times[0]) // bin_s) + 1)]
        return [self.attenuation_db_between(t, t + bin_s) for t in starts]

    def attenuation_db_between(self, since_s: float, until_s: float) -> float | None:
        """Echo energy in over out, in dB, for the echo frames between two perf_counter times."""
        chosen = [f for f in self.echo_frames if since_s <= f[0] < until_s]
        if not chosen:
            return None
        frames = np.array(chosen)
        return 10 * float(np.log10(frames[:, 1].sum() / max(frames[:, 2].sum(), 1e-9)))

    def judged_between(self, since_s: float, until_s: float) -> str:
        """What barge-in was told of the frames between two perf_counter times while the far end
        could echo: why a voice there was or was not heard."""
        states = [s for t, s in self.states if since_s <= t < until_s and s.far_active]
        if not states:
            return "the far end was quiet"
        converged = np.mean([s.converged for s in states])
        voiced = np.mean([s.near_evidence_db >= EVIDENCE_MARGIN_DB for s in states])
        erle = np.median([s.erle_db for s in states])
        return (
            f"{len(states)} frames the far end could echo in: converged in {converged:.0%} (ERLE median"
            f" {erle:.1f} dB), {EVIDENCE_MARGIN_DB:g} dB over the echo left in {voiced:.0%}"
        )

    def reset_measure(self) -> None:
        self.energy_in = self.energy_out = 0.0

    def attenuation_db(self) -> float | None:
        if not self.energy_in:
            return None
        return 10 * float(np.log10(self.energy_in / max(self.energy_out, 1e-9)))


def first_held(bins: list[float | None], bin_s: float, min_db: float, hold_s: float) -> float | None:
    """Start of the first bin with echo from which every bin for `hold_s` (one with no echo passes)
    keeps `min_db`; None: never. A dip after that is another event's: an underrun, the path moving."""
    need = max(1, min(round(hold_s / bin_s), len(bins)))
    for k in range(len(bins) - need + 1):
        if bins[k] is not None and all(db is None or db >= min_db for db in bins[k : k + need]):
            return k * bin_s
    return None


def play_reply(player: Player, turn_id: int, pcm: np.ndarray, rate_hz: int, chunk_s: float = 0.08) -> None:
    """Write a reply as an engine would: 80 ms chunks, as fast as the ring takes them."""
    from events import AudioChunk

    step = int(rate_hz * chunk_s)
    player.start_turn(turn_id)
    for k, start in enumerate(range(0, len(pcm), step)):
        if not player.write(AudioChunk(turn_id, pcm[start : start + step], rate_hz, k)):
            return
    player.finish_turn(turn_id)
