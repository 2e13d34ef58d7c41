"""Self-play and learner throughput as the progress display shows it."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from alphatriangle.core.learner import Learner
from alphatriangle.core.selfplay import EpisodeRecord

WINDOW_S = 10.0
"""Rates cover the last full window of this length and the current one."""
REPORT_EVERY_S = 0.5


@dataclass(frozen=True)
class Snapshot:
    """What the progress display shows; rates are over the last report window."""

    step: int
    start_step: int
    max_steps: int
    episodes: int
    buffer_size: int
    moves_per_s: float
    samples_per_s: float
    mean_score: float
    losses: dict[str, float]
    elapsed_s: float


class Meter:
    """Counts moves and trained samples; ``snapshot`` turns them into rates.

    The rates cover the last full ``WINDOW_S`` window and the current one, so they never read 0
    just after a window starts.
    """

    def __init__(
        self, start_step: int, max_steps: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.start_step = start_step
        self.max_steps = max_steps
        self._clock = clock
        self.start = clock()
        self.scores: deque[float] = deque(maxlen=50)
        self.losses: dict[str, float] = {}
        self._window_start = self.start
        self._window = [0, 0]  # moves, samples
        self._previous = (0.0, 0, 0)  # span, moves, samples of the last full window
        self._last_report = float("-inf")
        self.total_moves = 0
        self.total_samples = 0

    def episode(self, record: EpisodeRecord) -> None:
        self.scores.append(record.score)
        self._window[0] += record.length
        self.total_moves += record.length

    def trained(self, samples: int, metrics: dict[str, float]) -> None:
        self._window[1] += samples
        self.total_samples += samples
        self.losses = metrics

    def rates(self) -> tuple[float, float]:
        """Self-play moves/s and learner samples/s since the workers started."""
        span = max(self._clock() - self.start, 1e-9)
        return self.total_moves / span, self.total_samples / span

    def mean_score(self) -> float:
        return float(np.mean(self.scores)) if self.scores else float("-inf")

    def snapshot(self, learner: Learner) -> Snapshot | None:
        """The display's figures, at most every ``REPORT_EVERY_S`` (None in between)."""
        now = self._clock()
        if now - self._last_report < REPORT_EVERY_S:
            return None
        self._last_report = now
        window = now - self._window_start
        previous_span, previous_moves, previous_samples = self._previous
        span = max(previous_span + window, 1e-9)
        moves, samples = self._window
        snap = Snapshot(
            step=learner.counters.step,
            start_step=self.start_step,
            max_steps=self.max_steps,
            episodes=learner.counters.episodes,
            buffer_size=len(learner.buffer),
            moves_per_s=(previous_moves + moves) / span,
            samples_per_s=(previous_samples + samples) / span,
            mean_score=self.mean_score(),
            losses=self.losses,
            elapsed_s=now - self.start,
        )
        if window > WINDOW_S:
            self._previous = (window, moves, samples)
            self._window_start, self._window = now, [0, 0]
        return snap
