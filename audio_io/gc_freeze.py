"""Full garbage collections kept short in a process with audio callbacks: what it keeps is frozen.

PortAudio's callbacks here run Python, so each waits for the GIL, and a full collection holds the
GIL while it walks every tracked object. Measured on two cores: 18 to 26 ms for the app's 70,000
objects once its window is up, more than the speaker's 20 ms buffer; 75 to 123 ms for the audio
bench's 200,000 (torch imported), one of which fell 3 s into the echo grid's 150 ms x 1.0 cell, the
one cell whose clocks moved in five full runs. `gc.freeze()` takes what exists out of every later
collection; what is made afterwards is collected as before.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def long_lived_frozen() -> Iterator[int]:
    """Collect, then freeze what is left (enter once what lives as long as the process is built);
    yields how many objects are frozen. Leaving unfreezes them, so what died in a cycle meanwhile is
    freed at exit (frozen, soxr's bindings reported its resamplers leaked as the app quit)."""
    gc.collect()
    gc.freeze()
    try:
        yield gc.get_freeze_count()
    finally:
        gc.unfreeze()
