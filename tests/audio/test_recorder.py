"""The rig's `Recorder` stamps, which the benches read barge-in and gaps off: a block delivered late
is stamped when it was captured; lost samples move no block before them."""

from __future__ import annotations

import numpy as np

from bench.rig.pulse import restamp_late

RATE_HZ = 48_000
BLOCK = RATE_HZ // 100
START_S = 100.0


def recorded(arrivals: list[float]) -> list[float]:
    """Stamps of blocks of `BLOCK` samples arriving at these times, as the recorder keeps them."""
    stamps: list[tuple[int, float]] = []
    for k, arrived in enumerate(arrivals):
        stamps.append((k * BLOCK, arrived))
        restamp_late(stamps, RATE_HZ)
    return [t for _, t in stamps]


def captured_s(k: int) -> float:
    return START_S + k * BLOCK / RATE_HZ


def test_blocks_held_up_and_delivered_in_a_burst_are_stamped_when_captured() -> None:
    """0.4 s of blocks held up (the process starved) arrive together with the next on time; every
    on-time callback comes 0 to 3 ms late."""
    jitter = np.random.default_rng(0).uniform(0.0, 0.003, 150)
    arrivals = [captured_s(k) + jitter[k] for k in range(150)]
    for k in range(50, 90):
        arrivals[k] = captured_s(90) + (k - 50) * 1e-5
    stamps = recorded(arrivals)
    errors = [stamp - captured_s(k) for k, stamp in enumerate(stamps)]
    assert max(abs(e) for e in errors) < 0.003, max(errors)


def test_samples_lost_move_no_block_before_them() -> None:
    """0.4 s of samples never delivered (an overrun): the blocks after come that much later than
    their sample count says, and must not pull the ones before them earlier."""
    arrivals = [captured_s(k) for k in range(50)] + [captured_s(k + 40) for k in range(50, 150)]
    stamps = recorded(arrivals)
    assert np.allclose(stamps[:50], [captured_s(k) for k in range(50)], rtol=0, atol=1e-9)
    assert np.allclose(stamps[50:], arrivals[50:], rtol=0, atol=1e-9)
