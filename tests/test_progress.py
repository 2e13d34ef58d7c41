"""The live progress display's throughput figures."""

from __future__ import annotations

import time

from alphatriangle.buffer import ReplayBuffer
from alphatriangle.train import Counters, Snapshot, _maybe_report, _Meter


def _report(meter: _Meter) -> Snapshot:
    snapshots: list[Snapshot] = []
    meter.last_report = 0.0  # the display's own 0.5 s throttle is not under test
    buffer = ReplayBuffer(capacity=4, grid_shape=(1, 1, 1), other_dim=1, action_dim=1)
    _maybe_report(snapshots.append, meter, Counters(), 100, buffer, {})
    [snapshot] = snapshots
    return snapshot


def test_rates_cover_the_last_full_window_so_they_never_read_zero_after_a_reset() -> None:
    meter = _Meter(start_step=0)
    # 12 s of self-play at 100 moves/s and training at 300 samples/s ...
    meter.window_start = time.monotonic() - 12.0
    meter.window_moves, meter.window_samples = 1200, 3600
    first = _report(meter)
    assert abs(first.moves_per_s - 100.0) < 1.0
    assert abs(first.samples_per_s - 300.0) < 3.0
    # ... ends that window; right after, nothing has arrived yet in the new one.
    assert (meter.window_moves, meter.window_samples) == (0, 0)
    second = _report(meter)
    assert abs(second.moves_per_s - 100.0) < 1.0
    assert abs(second.samples_per_s - 300.0) < 3.0
