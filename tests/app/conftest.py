"""Fixtures for the app tests that use real sound devices: private PulseAudio servers with null
sinks (`tests/audio/pulse.py`), one set per module so the audio tests can start their own later."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from bench.rig.pulse import VirtualAudio, missing_tools


@pytest.fixture(scope="module")
def virtual_audio() -> Iterator[VirtualAudio]:
    missing = missing_tools() + [t for t in ("Xvfb",) if shutil.which(t) is None]
    if missing:
        pytest.fail(f"these tests need {', '.join(missing)} (scripts/setup installs them)")
    with VirtualAudio() as audio:
        yield audio
