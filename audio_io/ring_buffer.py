"""A preallocated single-producer, single-consumer ring of mono samples.

PortAudio callbacks read or write it without allocating or locking: positions count every sample ever
written or read and each is changed by one side only, so under the GIL the other side sees a consistent
value.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class SampleRing:
    """Ring of `capacity` samples; `write` drops what does not fit rather than overwrite unread data."""

    def __init__(self, capacity: int, dtype: Any = np.float32) -> None:
        self.capacity = capacity
        self._buf = np.zeros(capacity, dtype=dtype)
        self.write_pos = 0  # changed by the producer only
        self.read_pos = 0  # changed by the consumer only

    def available(self) -> int:
        """Samples written and not yet read."""
        return self.write_pos - self.read_pos

    def free(self) -> int:
        return self.capacity - self.available()

    def write(self, samples: np.ndarray) -> int:
        """Producer: copy as many samples as fit; return how many were written."""
        n = min(len(samples), self.free())
        if n <= 0:
            return 0
        start = self.write_pos % self.capacity
        first = min(n, self.capacity - start)
        self._buf[start : start + first] = samples[:first]
        if n > first:
            self._buf[: n - first] = samples[first:n]
        self.write_pos += n
        return n

    def read_into(self, out: np.ndarray) -> int:
        """Consumer: fill the front of `out` with up to `len(out)` samples; return how many."""
        n = min(len(out), self.available())
        if n <= 0:
            return 0
        start = self.read_pos % self.capacity
        first = min(n, self.capacity - start)
        out[:first] = self._buf[start : start + first]
        if n > first:
            out[first:n] = self._buf[: n - first]
        self.read_pos += n
        return n

    def skip_to(self, position: int) -> None:
        """Consumer: drop everything before `position` (never past what was written)."""
        self.read_pos = max(self.read_pos, min(position, self.write_pos))
