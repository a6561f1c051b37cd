"""How fast a reply may leave the player's ring: no faster than real time, plus what the device holds.

Under load, ALSA's PulseAudio plugin sometimes called the output callback every 0.4 to 6 ms, for a
second or for seconds from a stream's start, and played little of what it took: 6 to 7 s of a reply
went in under a second, and the reply ended early with the history saying it was heard (seen on the
rig under two busy loops, in 2 of 8 and 1 of 3 runs of a test). The callback still answers every
call, but past this budget with silence: a host that takes faster than it plays takes silence, and
the reply goes on from where it was. A token bucket on the wall clock, filled a little faster than
real time (`RATE_SLACK`: a device clock a little fast never starves), holding the device's own
buffer and `MARGIN_S` more (a host that catches up after a late callback takes what it had room
for).
"""

from __future__ import annotations

import math

MARGIN_S = 0.05  # beyond the device's latency, what a host may take at once
RATE_SLACK = 1.02  # the budget grows this much faster than real time


class Pace:
    """Called from the output callback only: `allows(...)` before reading, `took(n)` after."""

    def __init__(self) -> None:
        self.held_blocks = 0  # callbacks answered with silence though the ring had audio
        self._rate_hz = 0.0
        self._capacity = self._tokens = 0.0
        self._last_s = math.nan

    def reset(self, rate_hz: int, device_s: float) -> None:
        """A new stream: its buffer of `device_s` may be filled at once."""
        self._rate_hz = rate_hz * RATE_SLACK
        self._capacity = self._tokens = (device_s + MARGIN_S) * rate_hz
        self._last_s = math.nan

    def allows(self, now_s: float, frames: int, waiting: int) -> bool:
        """Whether a block of `frames` may be taken at `now_s` (perf_counter) from a ring holding
        `waiting` samples (with none, there is nothing to hold back)."""
        if math.isfinite(self._last_s):
            self._tokens = min(self._capacity, self._tokens + (now_s - self._last_s) * self._rate_hz)
        self._last_s = now_s
        if self._tokens >= min(frames, waiting):
            return True
        self.held_blocks += 1
        return False

    def took(self, samples: int) -> None:
        self._tokens -= samples
