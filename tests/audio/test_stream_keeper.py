"""A stream's keeper without PulseAudio: the failures of a stream that cannot be made on demand.

`FakeStream` stands in for a PortAudio stream at the one boundary we cannot drive: a stream that stops
calling back while its device stays, and a start that never returns (seen on PortAudio's ALSA host when
a PulseAudio sink is unloaded and loaded again, about one reload in twenty on this rig).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from audio_io import stream_keeper
from audio_io.devices import STREAM_SETUP_LOCK, AudioDevice
from audio_io.stream_keeper import RetryConfig, StreamKeeper, StreamRestarted
from bench.rig.echo import hold_gil
from bench.rig.pulse import wait_flowing
from events import DeviceRestored, DeviceUnavailable

DEVICE = AudioDevice(0, "fake", 0, 1, 48_000.0, False, True)


class FakeStream:
    """A stream whose callback is a thread; it can stop without finishing, and its start can hang
    until `release` is set."""

    def __init__(self, release: threading.Event | None = None) -> None:
        self.calls = 0
        self.silent = False
        self.closed = threading.Event()
        self._release = release

    def start(self) -> None:
        if self._release is not None:
            self._release.wait()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.closed.wait(0.01):
            if not self.silent:
                self.calls += 1

    def close(self, ignore_errors: bool = True) -> None:
        self.closed.set()


def _keeper(
    monkeypatch: pytest.MonkeyPatch, make: Callable[[], FakeStream], retry: RetryConfig
) -> tuple[StreamKeeper, list[FakeStream], list[object]]:
    monkeypatch.setattr(stream_keeper, "find_device", lambda name, kind: DEVICE)
    streams: list[FakeStream] = []
    events: list[object] = []

    def open_stream(device: AudioDevice, finished: object) -> FakeStream:
        streams.append(make())
        return streams[-1]

    keeper = StreamKeeper(
        "output", "fake", open_stream, lambda: sum(s.calls for s in streams), events.append, retry
    )
    return keeper, streams, events


def _wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not condition():
        time.sleep(0.01)
    return condition()


def test_watchdog_restarts_a_silent_stream_but_not_a_stalled_process(monkeypatch: pytest.MonkeyPatch) -> None:
    keeper, streams, events = _keeper(monkeypatch, FakeStream, RetryConfig())
    keeper.start()
    try:
        wait_flowing(lambda: sum(s.calls for s in streams), blocks=30)
        hold_gil(0.4)  # the whole process stalls: no restart
        time.sleep(0.3)
        assert events == [] and len(streams) == 1
        streams[0].silent = True  # the stream alone stops calling back
        assert _wait_for(lambda: bool(events))
        assert [type(e) for e in events] == [StreamRestarted] and len(streams) == 2
        restarted = events[0]
        assert isinstance(restarted, StreamRestarted) and restarted.kind == "output"
        wait_flowing(lambda: streams[1].calls, blocks=10)
    finally:
        keeper.stop()


def test_a_start_that_never_returns_is_left_behind_and_holds_up_no_other_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()
    hung = FakeStream(release)
    made = iter([hung])
    keeper, streams, events = _keeper(
        monkeypatch,
        lambda: next(made, None) or FakeStream(),
        RetryConfig(call_timeout_s=0.5, first_retry_s=0.05),
    )
    try:
        keeper.start(wait_for_device=True)
        assert [type(e) for e in events] == [DeviceUnavailable]
        assert "did not start within 0.5 s" in getattr(events[0], "reason", "")
        # Another stream can be set up while the hung start is still inside PortAudio.
        assert STREAM_SETUP_LOCK.acquire(timeout=2.0)
        STREAM_SETUP_LOCK.release()
        assert _wait_for(lambda: DeviceRestored in [type(e) for e in events])
        wait_flowing(lambda: streams[1].calls, blocks=10)
        assert keeper.stream is streams[1] and not hung.closed.is_set()
        release.set()  # the start returns at last: nobody wants its stream any more
        assert _wait_for(hung.closed.is_set)
        assert keeper.stream is streams[1] and not streams[1].closed.is_set()
    finally:
        release.set()
        keeper.stop()
