"""Virtual sound devices for tests and benchmarks, on machines with no sound card.

`VirtualAudio` runs two private PulseAudio servers (children of this process, in a temporary
directory) with a null sink each, and names them for PortAudio through an ALSA configuration:

    omni_speaker          play here: the assistant's "loudspeaker" (sink `speaker`)
    omni_speaker_monitor  record here what the loudspeaker played
    omni_mic              record here: the "microphone" (the monitor of sink `mic`)
    omni_mic_feed         play here what the microphone should hear
    omni_discard          ALSA's null device: it takes blocks as fast as it is given them and
                          plays nothing (what a loaded host did for a second after an underrun)

Two servers, not one: PulseAudio moves a stream whose sink disappears to another sink, so a lost
device is only lost when its server has nothing else. Private servers also leave a user's own
session alone. `ALSA_CONFIG_PATH` must be set before PortAudio starts; `start()` re-initialises
PortAudio when sounddevice was already imported.

Also here: `Feeder` (plays queued signals), `Recorder` (records with perf_counter stamps),
and `wait_flowing`. The echo path (loudspeaker monitor → delay and gain → microphone) is
`bench.rig.echo_path`; speech and noise are `bench.rig.signals`.
"""

from __future__ import annotations

import bisect
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audio_io.devices import STREAM_SETUP_LOCK

SPEAKER = "omni_speaker"
SPEAKER_MONITOR = "omni_speaker_monitor"
MIC = "omni_mic"
MIC_FEED = "omni_mic_feed"
DISCARD = "omni_discard"
SINK_RATE_HZ = 48_000
RESTAMP_S = 5.0  # how far back an on-time block corrects blocks delivered late (`Recorder`)


def missing_tools() -> list[str]:
    """System programs the virtual devices need (scripts/setup installs them)."""
    tools = [t for t in ("pulseaudio", "pactl", "espeak-ng") if shutil.which(t) is None]
    try:
        import sounddevice  # noqa: F401
    except OSError:
        tools.append("libportaudio2")
    return tools


@dataclass
class _Server:
    name: str
    sink: str
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    sink_module: int | None = None

    @property
    def address(self) -> str:
        return f"unix:{self.directory / 'native'}"


class VirtualAudio:
    """Start with `start()` (or as a context manager); `unload_sink`/`load_sink` simulate unplugging."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="omni-audio-"))
        self.servers = {
            "speaker": _Server("speaker", "speaker", self._dir / "speaker"),
            "mic": _Server("mic", "mic", self._dir / "mic"),
        }
        self._old_alsa_config: str | None = None

    def __enter__(self) -> VirtualAudio:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        for server in self.servers.values():
            self._start_server(server)
            self.load_sink(server.name)
        config = self._dir / "alsa.conf"
        config.write_text(self._alsa_config())
        self._old_alsa_config = os.environ.get("ALSA_CONFIG_PATH")
        os.environ["ALSA_CONFIG_PATH"] = str(config)
        refresh_portaudio()

    def stop(self) -> None:
        for server in self.servers.values():
            if server.process is not None:
                server.process.terminate()
                try:
                    server.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    server.process.kill()
                    server.process.wait(timeout=5)
                server.process = None
        if self._old_alsa_config is None:
            os.environ.pop("ALSA_CONFIG_PATH", None)
        else:
            os.environ["ALSA_CONFIG_PATH"] = self._old_alsa_config
        shutil.rmtree(self._dir, ignore_errors=True)

    def pactl(self, server: str, *args: str) -> str:
        result = subprocess.run(
            ["pactl", f"--server={self.servers[server].address}", *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if result.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def load_sink(self, server: str) -> None:
        s = self.servers[server]
        out = self.pactl(
            server,
            "load-module",
            "module-null-sink",
            f"sink_name={s.sink}",
            f"rate={SINK_RATE_HZ}",
            "channels=1",
        )
        s.sink_module = int(out.strip())

    def unload_sink(self, server: str) -> None:
        s = self.servers[server]
        if s.sink_module is not None:
            self.pactl(server, "unload-module", str(s.sink_module))
            s.sink_module = None

    def _start_server(self, server: _Server) -> None:
        server.directory.mkdir(parents=True)
        env = dict(os.environ)
        env.update(
            PULSE_RUNTIME_PATH=str(server.directory),
            PULSE_STATE_PATH=str(server.directory),
            XDG_RUNTIME_DIR=str(server.directory),
            HOME=str(server.directory),
        )
        log = open(server.directory / "log", "wb")  # noqa: SIM115 (the server writes it while it runs)
        server.process = subprocess.Popen(
            [
                "pulseaudio",
                "--daemonize=no",
                "-n",  # no default.pa: only the modules named here
                "--exit-idle-time=-1",
                "--disallow-exit",
                "--use-pid-file=no",
                "--log-target=stderr",
                f"--load=module-native-protocol-unix socket={server.directory / 'native'} auth-anonymous=1",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"pulseaudio exited: {(server.directory / 'log').read_text()[-2000:]}")
            try:
                self.pactl(server.name, "info")
                return
            except (RuntimeError, subprocess.TimeoutExpired):
                time.sleep(0.1)
        raise RuntimeError("pulseaudio did not start in 15 s")

    def _alsa_config(self) -> str:
        spk, mic = self.servers["speaker"], self.servers["mic"]
        system = "/usr/share/alsa/alsa.conf"

        def pcm(name: str, server: _Server, device: str) -> str:
            return (
                f'pcm.{name} {{ type pulse server "{server.address}" device "{device}" '
                f'hint {{ show on description "{name}" }} }}\n'
            )

        return (
            f"<{system}>\n"
            + pcm(SPEAKER, spk, spk.sink)
            + pcm(SPEAKER_MONITOR, spk, f"{spk.sink}.monitor")
            + pcm(MIC, mic, f"{mic.sink}.monitor")
            + pcm(MIC_FEED, mic, mic.sink)
            + f'pcm.{DISCARD} {{ type null hint {{ show on description "{DISCARD}" }} }}\n'
        )


def refresh_portaudio() -> None:
    """Make PortAudio see the current ALSA configuration (only needed if it was already initialised)."""
    sd = sys.modules.get("sounddevice")
    if sd is not None:
        with STREAM_SETUP_LOCK:  # a stream keeper left running must not open a stream meanwhile
            sd._terminate()
            sd._initialize()


def wait_flowing(progress: Any, blocks: int = 30, timeout_s: float = 20.0) -> None:
    """Wait until a stream's callbacks run steadily: a PulseAudio stream starts in fits for ~0.5 s."""
    deadline = time.monotonic() + timeout_s
    start = progress()
    while time.monotonic() < deadline:
        if progress() - start >= blocks:
            return
        time.sleep(0.02)
    raise TimeoutError("the audio stream did not start")


# -- signals ---------------------------------------------------------------------------------------


class Feeder:
    """An output stream that plays queued signals back to back, silence in between.

    `play(x)` returns the perf_counter time at which the first sample will leave the device (the
    callback's own estimate: when it copied it, plus the stream's latency) once it has started.
    """

    def __init__(self, device: str, rate_hz: int = SINK_RATE_HZ) -> None:
        import sounddevice as sd

        self.rate_hz = rate_hz
        self._queue: list[tuple[np.ndarray, threading.Event, list[float]]] = []
        self._current: tuple[np.ndarray, threading.Event, list[float]] | None = None
        self._offset = 0
        self._lock = threading.Lock()
        self._callbacks = 0
        with STREAM_SETUP_LOCK:
            self._stream = sd.OutputStream(
                device=device, samplerate=rate_hz, channels=1, dtype="float32", latency="low",
                blocksize=rate_hz // 100, callback=self._callback,
            )  # fmt: skip
            self._stream.start()
        wait_flowing(lambda: self._callbacks)

    def play(self, signal: np.ndarray, wait: bool = False) -> list[float]:
        """Queue `signal`; the returned list gets its start time. `wait` blocks until it was all played."""
        done, started = threading.Event(), list[float]()
        with self._lock:
            self._queue.append((np.asarray(signal, dtype=np.float32), done, started))
        if wait:
            done.wait(len(signal) / self.rate_hz + 30)
        return started

    def busy(self) -> bool:
        with self._lock:
            return bool(self._queue) or self._current is not None

    def close(self) -> None:
        with STREAM_SETUP_LOCK:  # as the app's own streams: never beside another stream's open or close
            self._stream.close(ignore_errors=True)

    def _callback(self, out: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        self._callbacks += 1
        out.fill(0)
        filled = 0
        while filled < frames:
            if self._current is None:
                with self._lock:
                    if not self._queue:
                        break
                    self._current, self._offset = self._queue.pop(0), 0
                self._current[2].append(time.perf_counter() + self._stream.latency + filled / self.rate_hz)
            signal, done, _ = self._current
            n = min(frames - filled, len(signal) - self._offset)
            out[filled : filled + n, 0] = signal[self._offset : self._offset + n]
            filled += n
            self._offset += n
            if self._offset >= len(signal):
                done.set()
                self._current = None


def restamp_late(stamps: list[tuple[int, float]], rate_hz: int) -> None:
    """Given a new block (the last of `stamps`: first sample index, capture time), move the blocks
    before it, back to `RESTAMP_S`, to no later than it shows they were captured. Lost samples only
    make a block look later, so they never move one before it."""
    newest, now = stamps[-1]
    k = len(stamps) - 2
    while k >= 0 and now - stamps[k][1] < RESTAMP_S:
        first, stamped = stamps[k]
        captured = now - (newest - first) / rate_hz
        if stamped <= captured:
            break
        stamps[k] = (first, captured)
        k -= 1


class Recorder:
    """An input stream recording everything, each block stamped with its perf_counter capture time.

    A callback can only come late, never early: a block delivered late (this process starved, its
    blocks handed over in a burst) is stamped by the first on-time block after it, which shows when
    it was captured. In `bench.app` under load the monitor's blocks came up to 494 ms late, none
    lost: stamped on arrival, what it heard looked that much later.
    """

    def __init__(self, device: str, rate_hz: int = SINK_RATE_HZ) -> None:
        import sounddevice as sd

        self.rate_hz = rate_hz
        self._blocks: list[np.ndarray] = []
        self._stamps: list[tuple[int, float]] = []  # (first sample index, capture time)
        self._count = 0
        with STREAM_SETUP_LOCK:
            self._stream = sd.InputStream(
                device=device, samplerate=rate_hz, channels=1, dtype="float32", latency="low",
                blocksize=rate_hz // 100, callback=self._callback,
            )  # fmt: skip
            self._stream.start()
        wait_flowing(lambda: len(self._stamps))

    def _callback(self, data: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        now = time.perf_counter() - self._stream.latency - frames / self.rate_hz
        self._blocks.append(data[:, 0].copy())
        self._stamps.append((self._count, now))
        self._count += frames
        restamp_late(self._stamps, self.rate_hz)

    def samples(self) -> np.ndarray:
        blocks = list(self._blocks)
        return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)

    def samples_from(self, index: int) -> np.ndarray:
        """The samples from `index` on, joining only the blocks that hold them (a long recording
        is polled often: the whole of it each time would cost more than the thing measured)."""
        stamps = list(self._stamps)
        starts = [s for s, _ in stamps]
        k = max(0, bisect.bisect_right(starts, index) - 1)
        blocks = self._blocks[k : len(stamps)]
        if not blocks:
            return np.zeros(0, np.float32)
        return np.concatenate(blocks)[max(0, index - starts[k]) :]

    def time_of(self, index: int) -> float:
        """perf_counter capture time of sample `index`, from the nearest block stamp."""
        stamps = list(self._stamps)
        starts = np.array([s for s, _ in stamps])
        k = max(0, int(np.searchsorted(starts, index, side="right")) - 1)
        first, t = stamps[k]
        return t + (index - first) / self.rate_hz

    def index_at(self, time_s: float) -> int:
        stamps = list(self._stamps)
        times = np.array([t for _, t in stamps])
        k = max(0, int(np.searchsorted(times, time_s, side="right")) - 1)
        first, t = stamps[k]
        return first + round((time_s - t) * self.rate_hz)

    def close(self) -> None:
        with STREAM_SETUP_LOCK:  # as the app's own streams: never beside another stream's open or close
            self._stream.close(ignore_errors=True)
