"""Fixtures for the audio tests: private PulseAudio servers with null sinks (see `pulse.py`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.rig.echo import EchoRig
from bench.rig.pulse import VirtualAudio, missing_tools


@pytest.fixture(scope="session")
def virtual_audio() -> Iterator[VirtualAudio]:
    missing = missing_tools()
    if missing:
        pytest.fail(f"audio tests need {', '.join(missing)} (scripts/setup installs them)")
    with VirtualAudio() as audio:
        yield audio


@pytest.fixture
def devices(virtual_audio: VirtualAudio) -> Iterator[VirtualAudio]:
    """The virtual devices, with both sinks present at the start and the end of each test."""
    for server in virtual_audio.servers.values():
        if server.sink_module is None:
            virtual_audio.load_sink(server.name)
    yield virtual_audio
    for server in virtual_audio.servers.values():
        if server.sink_module is None:
            virtual_audio.load_sink(server.name)


@pytest.fixture
def rig(devices: VirtualAudio) -> Iterator[EchoRig]:
    """The echo rig (`bench.rig.echo`) on those devices."""
    with EchoRig() as echo_rig:
        yield echo_rig
