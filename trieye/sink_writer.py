"""Aggregated points into the sinks, in step order, held while a disk refuses them.

No Ray here: the actor calls `SinkWriter.write` under its sink lock, and `Outages` is shared
with the run's lifecycle (run.json, the MLflow run status), whose writes a disk can refuse too.
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from collections.abc import Mapping

from trieye.aggregation import MetricPoint
from trieye.config import Target
from trieye.sinks import Sink, is_storage_error

logger = logging.getLogger("trieye")

MAX_HELD_STEPS = 100_000
"""Steps of points a sink holds while its disk refuses writes; older ones are dropped, counted."""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


class Outages:
    """What of a run cannot be written right now (a sink, run.json, the MLflow run status), so
    that a refused write is reported when the outage starts and when it ends, not at every try."""

    def __init__(self, run_name: str) -> None:
        self._run_name = run_name
        self.failing: set[str] = set()

    def failed(self, what: str, exc: BaseException) -> None:
        if what not in self.failing:
            self.failing.add(what)
            logger.error(
                "writing %s of run %r failed (%s: %s); held and retried at every flush, the "
                "run goes on",
                what,
                self._run_name,
                type(exc).__name__,
                first_line(exc),
            )

    def ok(self, what: str) -> None:
        if what in self.failing:
            self.failing.discard(what)
            logger.warning("writing %s of run %r works again", what, self._run_name)


class SinkWriter:
    """Per sink, the queue of points not written yet, written oldest step first.

    A sink whose disk refuses a write keeps the rest of its queue for the next `write`, so a
    full disk delays points instead of losing them; past `max_held_steps` steps the oldest are
    dropped and counted in `points_lost`. Any other error of a sink is a bug and is raised.
    """

    def __init__(
        self,
        sinks: Mapping[Target, Sink],
        outages: Outages,
        max_held_steps: int = MAX_HELD_STEPS,
    ) -> None:
        self.sinks: dict[Target, Sink] = dict(sinks)
        """The sinks by target; the owner adds or replaces one between writes."""
        self._outages = outages
        self._max_held_steps = max_held_steps
        self._held: dict[Target, deque[tuple[int, dict[str, float]]]] = defaultdict(deque)
        self.points_lost: dict[str, int] = {}

    def holds_points(self) -> bool:
        return any(self._held.values())

    def held_points(self) -> dict[str, int]:
        """Per target that has held points since it was first written, how many it holds."""
        return {
            target: sum(len(metrics) for _, metrics in queue)
            for target, queue in self._held.items()
        }

    def write(self, points: list[MetricPoint]) -> None:
        """Queue `points` per sink behind any it still holds, then write each queue."""
        by_step: dict[int, dict[Target, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
        for point in points:
            for target in point.targets:
                by_step[point.step][target][point.name] = point.value
        for step in sorted(by_step):
            for target, metrics in by_step[step].items():
                self._held[target].append((step, metrics))
        for target in list(self._held):
            self._drain(target)

    def _drain(self, target: Target) -> None:
        queue = self._held[target]
        while queue:
            step, metrics = queue[0]
            try:
                self.sinks[target].write(metrics, step)
            except Exception as exc:
                if not is_storage_error(exc):
                    raise
                self._outages.failed(target, exc)
                self._drop_excess(target)
                return
            queue.popleft()
        self._outages.ok(target)

    def _drop_excess(self, target: Target) -> None:
        queue = self._held[target]
        excess = len(queue) - self._max_held_steps
        if excess > 0:
            lost = sum(len(queue.popleft()[1]) for _ in range(excess))
            self.points_lost[target] = self.points_lost.get(target, 0) + lost
            logger.error(
                "%s: dropped %d held metric points (more than %d steps held; %d lost so far)",
                target,
                lost,
                self._max_held_steps,
                self.points_lost[target],
            )

    def report_unwritten(self, run_name: str) -> None:
        """Log, per sink, the points still held: called when nothing will write them any more."""
        for target, count in self.held_points().items():
            if count:
                logger.error(
                    "%d metric points of run %r could not be written to %s before the sidecar "
                    "shut down (the disk refused them) and are lost",
                    count,
                    run_name,
                    target,
                )
