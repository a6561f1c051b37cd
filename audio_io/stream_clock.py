"""Where a stream's samples sit on `time.perf_counter()`, re-anchored on the stream's own timing.

Each callback gives one estimate of the time of the stream's position 0: for an output stream, the
time its block reaches the speaker (PortAudio's `outputBufferDacTime`, which the host computes from
what is still queued in the device) less the position written so far; for an input stream, the time
its block was captured (now, less the nominal latency and the block) less the position read so far.
A late callback only looks later, so the earliest estimate is the truest.

Nothing is accumulated: the anchor follows an earlier estimate at once, and when every estimate of a
`window_s` window is later than it by more than `slack_s` (the device played silence we never wrote,
or dropped input we never read: an underrun, an overflow, a stall) it moves to that window's earliest.
A callback gap longer than `gap_s` (a stall: the device certainly ran on without us) or a new stream
starts afresh, from the next callback on: the callbacks right after a stall (a catch-up burst) are
believed at once. Not believing them for half a second left the echo canceller with no far end:
measured on the rig, 2 to 8 dB of attenuation where there were 70, for a second after every stall.
`generation` counts re-anchorings, so a reader knows its alignment moved.

After an underrun, ALSA's PulseAudio plugin took blocks far faster than it plays them and threw them
away: a callback every 0.4 to 6 ms for half a second, its delay stuck or exactly 0. Believed, each
of them moved the anchor a block earlier (5 s in that half second), and the echo canceller was fed a
far end seconds off. So an output's callback that comes sooner than `burst_s` after the one before,
or whose host says it does not know the delay (0: `timed` False, estimated from the nominal latency),
starts a timeline but moves none earlier. Once the host plays at its pace again, what it took and
never played shows as a move earlier, and is believed. (An input's burst delivers what waited, the
last block freshest: its earliest estimate stays the truest, so `burst_s` is 0 there.)
"""

from __future__ import annotations

import math
from typing import Any

MAX_DEVICE_DELAY_S = 2.0  # a host's output delay beyond this is not believed
STALL_S = 0.12  # a callback gap this long is a stall (a loaded machine's own jitter stays under it)


class StreamClock:
    """Called from one stream callback; read `anchor_s` (perf_counter time of position 0) anywhere."""

    def __init__(
        self, window_s: float = 2.0, slack_s: float = 0.012, gap_s: float = 0.08, burst_s: float = 0.0
    ) -> None:
        self.window_s = window_s
        self.slack_s = slack_s
        self.gap_s = gap_s
        self.burst_s = burst_s
        self.anchor_s = math.inf
        self.generation = 0
        self.gaps = 0  # callback gaps beyond `STALL_S` (a stall): the sound may have moved unseen
        self._window_min = math.inf
        self._window_end = -math.inf
        self._last_s = -math.inf

    def reset(self) -> None:
        """A new stream: forget the old timeline (the next callback anchors it)."""
        self.anchor_s = math.inf
        self._window_min = math.inf
        self._window_end = self._last_s = -math.inf
        self.generation += 1

    def update(self, now_s: float, estimate_s: float, timed: bool = True) -> float:
        """One callback at `now_s` estimating position 0 at `estimate_s` (with `timed` False, from
        the nominal latency: the host did not know when its block is heard); returns the anchor."""
        if now_s - self._last_s > self.gap_s and math.isfinite(self._last_s):
            self.gaps += now_s - self._last_s > STALL_S
            self.reset()
        burst = now_s - self._last_s < self.burst_s
        self._last_s = now_s
        if (burst or not timed) and math.isfinite(self.anchor_s):
            estimate_s = max(estimate_s, self.anchor_s)
        if estimate_s < self._window_min:
            self._window_min = estimate_s
        if estimate_s < self.anchor_s:
            if self.anchor_s - estimate_s > self.slack_s:
                self.generation += 1
            self.anchor_s = estimate_s
        if now_s >= self._window_end:
            if self._window_min > self.anchor_s + self.slack_s and math.isfinite(self._window_min):
                self.anchor_s = self._window_min
                self.generation += 1
            self._window_min = math.inf
            self._window_end = now_s + self.window_s
        return self.anchor_s


def output_delay_s(time_info: Any, fallback_s: float) -> float | None:
    """How long an output block waits in the device: PortAudio's `outputBufferDacTime` less its
    `currentTime`, which counts what the host really holds (after an underrun ALSA's PulseAudio plugin
    takes a second or more at once), or `fallback_s` (the nominal latency) when the host gives none.
    None when the host says 0: it does not know (see the module's doc; a device always holds some).

    Input streams get no such help: the same plugin reports capture times hundreds of ms off, drifting.
    """
    try:
        current, stamp = float(time_info.currentTime), float(time_info.outputBufferDacTime)
    except (AttributeError, TypeError, ValueError):
        return fallback_s
    delay = stamp - current
    if current <= 0 or stamp <= 0 or not 0.0 <= delay <= MAX_DEVICE_DELAY_S:
        return fallback_s
    return delay if delay > 0.0 else None
