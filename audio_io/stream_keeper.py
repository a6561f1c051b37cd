"""Keeps one PortAudio stream alive: reports a lost device once, then reopens it with back-off.

A stream is lost when PortAudio ends it (its finished callback runs while we still want it), or when
its callback stops being called for `stall_timeout_s`. Reopening tries the named device first and
the system default next; while on the default it keeps probing for the named device to come back.
Started with `wait_for_device`, a device that cannot open yet is reported (`DeviceUnavailable`) and
waited for the same way, so a device plugged in after the start is taken up by itself; every reopen
is reported (`DeviceRestored`).

A watchdog catches the smaller failure: a stream that flowed, then stops calling back for
`restart_gap_s` while this process runs (a host's underrun recovery can leave it silent for seconds)
is restarted on the same device at once, reported as `StreamRestarted` and logged, not as a lost
device. Time this process itself was stopped (SIGSTOP, a call holding the GIL) is not counted: the
watchdog's own late wake-ups say when that was.

PortAudio's start and close can block for good on a device that just went away and came back (its
ALSA host over PulseAudio does). Both run on a helper thread that is waited for a bounded time, while
the keeper's own thread holds `STREAM_SETUP_LOCK`: a call that never returns is left behind (a start
that returns late closes its stream) and holds up no other stream.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

from audio_io.devices import STREAM_SETUP_LOCK, AudioDevice, DeviceKind, UnknownDeviceError, find_device
from events import DeviceLost, DeviceRestored, DeviceUnavailable
from worker_thread import WorkerThread

log = logging.getLogger(__name__)

EventSink = Callable[[object], None]
FLOWING_CALLBACKS = 20  # callbacks after an open before the stream counts as flowing (starts come in fits)
PREFERRED_PROBE_S = 5.0  # on the fallback device, how often the named one is looked for (a child process)


@dataclass(frozen=True, slots=True)
class StreamRestarted:
    """The watchdog restarted a stream whose callbacks had stopped for `gap_ms` (of running time)."""

    kind: DeviceKind
    name: str
    gap_ms: float


OpenStream = Callable[[AudioDevice, Callable[[], None]], Any]  # (device, finished_callback) -> stream
Probe = Callable[[str | None, DeviceKind], bool]  # (device name or None for the default, kind) -> opens


@dataclass(frozen=True, slots=True)
class RetryConfig:
    stall_timeout_s: float = 2.0  # a loaded machine can pause a callback thread; this is far longer
    first_retry_s: float = 0.1
    max_retry_s: float = 2.0
    poll_s: float = 0.02
    restart_gap_s: float | None = 0.5  # callbacks missing this long, once flowing: restart (None: never)
    call_timeout_s: float = 3.0  # a start or close not back by then is left behind (a start: failed)


class StreamKeeper:
    """Owns the stream of one `Microphone` or `Player`; `progress()` must grow while audio flows."""

    def __init__(
        self,
        kind: DeviceKind,
        device_name: str | None,
        open_stream: OpenStream,
        progress: Callable[[], int],
        on_event: EventSink,
        retry: RetryConfig,
        probe: Probe | None = None,
    ) -> None:
        """`probe`, when given, is asked before a lost or awaited device is opened again
        (`device_probe.opens_in_child`: a failing open can crash the process that makes it)."""
        self.kind = kind
        self.device_name = device_name
        self._open_stream = open_stream
        self._progress = progress
        self._on_event = on_event
        self._retry = retry
        self._probe = probe
        self._stream: Any = None
        self.device: AudioDevice | None = None
        self.losses = 0
        self.returns = 0  # a lost device opened again (or the first device, when started waiting for one)
        self.restarts = 0
        self._finished = threading.Event()
        self._worker = WorkerThread(f"audio-{kind}-keeper")
        self._stopping = self._worker.stop_requested

    @property
    def stream(self) -> Any:
        return self._stream

    def start(self, wait_for_device: bool = False) -> None:
        """Open on the named device, then watch it. An unknown name raises `UnknownDeviceError` here,
        unless `wait_for_device`: then the failure is reported and the device is waited for."""
        try:
            self._open(find_device(self.device_name, self.kind))
        except Exception as error:
            if not wait_for_device:
                raise
            name = self.device_name or "system default"
            self._on_event(DeviceUnavailable(kind=self.kind, name=name, reason=str(error).split("\n")[0]))
        self._worker.start(self._watch)

    def stop(self) -> None:
        self._worker.stop()
        self._close()

    def _open(self, device: AudioDevice) -> None:
        finished = threading.Event()  # one per stream: closing an old stream must not flag the new one
        timeout_s = self._retry.call_timeout_s
        with STREAM_SETUP_LOCK:
            stream = self._open_stream(device, finished.set)

            def close() -> None:
                _close_stream(stream, timeout_s)

            try:
                started = _call_within(stream.start, timeout_s, if_late=close)
            except Exception:
                close()
                raise
        if not started:
            message = f"the {self.kind} stream on {device.name!r} did not start within {timeout_s:g} s"
            log.warning("%s; left behind", message)
            raise StreamStartTimeout(message)
        self._stream, self.device, self._finished = stream, device, finished

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            _close_stream(stream, self._retry.call_timeout_s)

    def _watch(self) -> None:
        if self._stream is None:
            self._reopen()
        poll = self._retry.poll_s
        last_progress, last_change, tick = self._progress(), time.monotonic(), time.monotonic()
        opened_at, silent_s = last_progress, 0.0
        while not self._stopping.wait(poll):
            progress, now = self._progress(), time.monotonic()
            awake = now - tick < 3 * poll  # else this process was stopped: that time is not the stream's
            tick = now
            if progress != last_progress:
                last_progress, last_change, silent_s = progress, now, 0.0
            elif awake:
                silent_s += poll
            if self._finished.is_set() or now - last_change > self._retry.stall_timeout_s:
                self._lost()
            elif self._gap_too_long(silent_s, progress - opened_at):
                self._restart(silent_s)
            elif self._on_fallback() and now - last_change < poll * 4:
                self._probe_preferred(now)
                continue
            else:
                continue
            last_progress, last_change, silent_s = self._progress(), time.monotonic(), 0.0
            opened_at = last_progress

    def _gap_too_long(self, silent_s: float, callbacks_since_open: int) -> bool:
        gap = self._retry.restart_gap_s
        return gap is not None and silent_s > gap and callbacks_since_open >= FLOWING_CALLBACKS

    def _restart(self, silent_s: float) -> None:
        """Close the silent stream and open the same device afresh (closing first: a stream's
        callback may resume, and two would share the player's ring); on failure it is a lost device."""
        name = self.device.name if self.device else str(self.device_name)
        self._close()
        try:
            self._open(self.device if self.device is not None else find_device(self.device_name, self.kind))
        except Exception:
            self._lost()
            return
        self.restarts += 1
        gap_ms = silent_s * 1e3
        log.warning("%s stream %r stopped calling back for %.0f ms; restarted", self.kind, name, gap_ms)
        self._on_event(StreamRestarted(kind=self.kind, name=name, gap_ms=gap_ms))

    def _lost(self) -> None:
        self.losses += 1
        name = self.device.name if self.device else str(self.device_name)
        self._on_event(DeviceLost(kind=self.kind, name=name))
        self._close()
        self._reopen()

    def _reopen(self) -> None:
        """Try again with back-off until a device opens (or the keeper stops), and say so."""
        delay = self._retry.first_retry_s
        while not self._stopping.wait(delay):
            if self._try_open():
                self.returns += 1
                name = self.device.name if self.device else str(self.device_name)
                self._on_event(DeviceRestored(kind=self.kind, name=name))
                return
            delay = min(delay * 2, self._retry.max_retry_s)

    def _try_open(self) -> bool:
        candidates = [self.device_name, None] if self.device_name is not None else [None]
        for name in candidates:
            try:
                if self._probe_says_no(name):
                    continue
                self._open(find_device(name, self.kind))
                return True
            except Exception:  # PortAudioError, a vanished device, a rate it refuses: try the next
                continue
        return False

    def _probe_says_no(self, name: str | None) -> bool:
        return self._probe is not None and not self._probe(name, self.kind)

    _next_probe_s = 0.0

    def _on_fallback(self) -> bool:
        return (
            self.device_name is not None
            and self.device is not None
            and self.device_name.casefold() not in self.device.name.casefold()
        )

    def _probe_preferred(self, now: float) -> None:
        if now < self._next_probe_s:
            return
        self._next_probe_s = now + PREFERRED_PROBE_S
        try:
            preferred = find_device(self.device_name, self.kind)
        except UnknownDeviceError:
            return
        if self._probe_says_no(self.device_name):
            return
        old_stream = self._stream
        try:
            self._open(preferred)
        except Exception:
            return
        if old_stream is not None:
            _close_stream(old_stream, self._retry.call_timeout_s)


class StreamStartTimeout(RuntimeError):
    """PortAudio's start did not return in time (the device went away while it started)."""


def _close_stream(stream: Any, timeout_s: float) -> None:
    """Close under the set-up lock, waiting for it at most `timeout_s` (a dead device can block it)."""
    with STREAM_SETUP_LOCK, contextlib.suppress(Exception):
        _call_within(lambda: stream.close(ignore_errors=True), timeout_s)


def _call_within(
    call: Callable[[], None], timeout_s: float, if_late: Callable[[], None] | None = None
) -> bool:
    """Run `call` on a helper thread and wait at most `timeout_s`: True when it returned (what it
    raised is raised here), False when not: it runs on, and `if_late` runs once it returns."""
    outcome: futures.Future[None] = futures.Future()

    def run() -> None:
        try:
            call()
        except Exception as error:
            outcome.set_exception(error)
        else:
            outcome.set_result(None)

    threading.Thread(target=run, name="audio-stream-call", daemon=True).start()
    if not futures.wait([outcome], timeout=timeout_s).done:
        if if_late is not None:
            late = if_late
            outcome.add_done_callback(lambda _: late())  # at once if it returned meanwhile
        return False
    outcome.result()
    return True
