"""Whether a device opens, asked of a fresh process: `python -m audio_io.device_probe KIND [NAME]`.

PortAudio's ALSA host can crash the process that opens a stream on a device that is going away (on
the PulseAudio rig: a segfault inside Pa_OpenStream while a sink was unloaded, about one reload in
twenty). A keeper reopening a lost device asks a child first, so that the child takes that risk; the
child also lists the devices as they are now, where this process's PortAudio listed them at its start.
"""

from __future__ import annotations

import subprocess
import sys

from audio_io.devices import DeviceKind, find_device

PROBE_TIMEOUT_S = 10.0  # a child not done by then (a host hung on a dying device): no


def opens_in_child(name: str | None, kind: DeviceKind) -> bool:
    """Whether a child process finds the device `name` (None: the default) and opens a stream on it."""
    command = [sys.executable, "-m", "audio_io.device_probe", kind, *([name] if name is not None else [])]
    try:
        done = subprocess.run(command, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def main(argv: list[str]) -> int:
    import sounddevice as sd

    kind: DeviceKind = "input" if argv[0] == "input" else "output"
    device = find_device(argv[1] if len(argv) > 1 else None, kind)
    stream_type = sd.InputStream if kind == "input" else sd.OutputStream
    stream = stream_type(device=device.index, samplerate=device.default_sample_rate_hz, channels=1)
    stream.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
