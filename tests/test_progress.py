"""The progress display's throughput figures, on a clock the test moves."""

from __future__ import annotations

import numpy as np

from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.learner import Learner
from alphatriangle.core.selfplay import EpisodeRecord
from alphatriangle.distributed.meter import Meter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _episode(length: int) -> EpisodeRecord:
    empty = np.zeros((length, 0), np.float32)
    return EpisodeRecord(
        grid=empty, other=empty, policy=empty, valid_mask=empty.astype(bool),
        scores=np.zeros(length + 1, np.float32), rewards=np.zeros(length, np.float32),
        score=7.0, length=length, triangles_cleared=0, simulations=0, search_depth=0.0, seed=0,
    )  # fmt: skip


def test_rates_cover_the_last_full_window_so_they_never_read_zero_after_a_reset() -> None:
    clock = Clock()
    learner = Learner(AlphaTriangleConfig.from_dict({"train": {"buffer_capacity": 500}}))
    meter = Meter(start_step=0, max_steps=100, clock=clock)
    # 12 s of self-play at 100 moves/s and training at 300 samples/s ...
    for _ in range(12):
        clock.now += 1.0
        meter.episode(_episode(100))
        meter.trained(300, {"loss/total": 0.5})
    first = meter.snapshot(learner)
    assert first is not None
    assert (first.moves_per_s, first.samples_per_s, first.mean_score) == (100.0, 300.0, 7.0)
    assert first.losses == {"loss/total": 0.5}
    # ... ends that window; right after it nothing has arrived yet in the new one, and the
    # rates still cover the full window.
    assert meter.snapshot(learner) is None  # reports at most every 0.5 s
    clock.now += 0.5
    second = meter.snapshot(learner)
    assert second is not None
    assert (second.moves_per_s, second.samples_per_s) == (1200 / 12.5, 3600 / 12.5)
