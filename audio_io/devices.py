"""Audio device listing and lookup by name (a case-insensitive substring) or the system default."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

DeviceKind = Literal["input", "output"]

# PortAudio's ALSA host opens and closes streams without locks of its own: two threads doing it at
# once (the microphone and the speaker both reopening after an unplug) can abort the process.
STREAM_SETUP_LOCK = threading.RLock()


@dataclass(frozen=True, slots=True)
class AudioDevice:
    index: int
    name: str
    max_input_channels: int
    max_output_channels: int
    default_sample_rate_hz: float
    is_default_input: bool
    is_default_output: bool


class UnknownDeviceError(LookupError):
    """No device matches the requested name; the message lists the devices there are."""


def list_devices() -> list[AudioDevice]:
    """Every PortAudio device, in PortAudio's order."""
    import sounddevice as sd

    default_in, default_out = _default_indices()
    return [
        AudioDevice(
            index=i,
            name=str(d["name"]),
            max_input_channels=int(d["max_input_channels"]),
            max_output_channels=int(d["max_output_channels"]),
            default_sample_rate_hz=float(d["default_samplerate"]),
            is_default_input=i == default_in,
            is_default_output=i == default_out,
        )
        for i, d in enumerate(sd.query_devices())
    ]


def stream_rate_hz(device: AudioDevice, kind: DeviceKind, wanted_hz: int) -> int:
    """`wanted_hz` when the device takes it, else the device's own rate. A sound server (PulseAudio,
    PipeWire) takes any rate and converts as it goes, with no block of its own to fill: soxr's stream
    resampler, in this process, holds back 20 ms on average (up to 40) before a sample comes out."""
    import sounddevice as sd

    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=device.index, samplerate=wanted_hz, channels=1, dtype="float32")
        return wanted_hz
    except sd.PortAudioError:
        return int(device.default_sample_rate_hz) or wanted_hz


def find_device(name: str | None, kind: DeviceKind) -> AudioDevice:
    """The device named `name` (exact, else first substring match) with `kind` channels, or the default."""
    devices = [d for d in list_devices() if _channels(d, kind) > 0]
    if name is None:
        for d in devices:
            if d.is_default_input if kind == "input" else d.is_default_output:
                return d
        if devices:
            return devices[0]
        raise UnknownDeviceError(f"no {kind} device at all; {describe_devices()}")
    wanted = name.casefold()
    exact = [d for d in devices if d.name.casefold() == wanted]
    partial = [d for d in devices if wanted in d.name.casefold()]
    if exact or partial:
        return (exact or partial)[0]
    raise UnknownDeviceError(f"no {kind} device matches {name!r}; {describe_devices()}")


def describe_devices() -> str:
    """One line per device, for error messages and `--list-devices`."""
    lines = [
        f"{d.index}: {d.name!r} ({d.max_input_channels} in, {d.max_output_channels} out, "
        f"{d.default_sample_rate_hz:.0f} Hz){' [default in]' if d.is_default_input else ''}"
        f"{' [default out]' if d.is_default_output else ''}"
        for d in list_devices()
    ]
    return "devices are:\n  " + ("\n  ".join(lines) if lines else "(none)")


def _channels(device: AudioDevice, kind: DeviceKind) -> int:
    return device.max_input_channels if kind == "input" else device.max_output_channels


def _default_indices() -> tuple[int, int]:
    import sounddevice as sd

    found = []
    for kind in ("input", "output"):
        try:
            found.append(int(sd.query_devices(kind=kind)["index"]))
        except (sd.PortAudioError, ValueError, TypeError, KeyError):
            found.append(-1)
    return found[0], found[1]
