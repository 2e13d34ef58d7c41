"""Events in: the aggregator, the delivery ledger and the sidecar's own metrics, behind one lock.

No Ray and no I/O here. The actor's ingest thread folds batches in, its writer drains points
out; the lock is held for microseconds, so ingest never waits on a slow sink.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from trieye.aggregation import MetricAggregator, MetricPoint
from trieye.config import MetricSpec, TrieyeConfig
from trieye.events import WireEvent
from trieye.ledger import DeliveryLedger, Span
from trieye.run_record import RunRecord
from trieye.system import ProcessSampler

logger = logging.getLogger("trieye")

RESTARTS_METRIC = "trieye/restarts"
LOST_EVENTS_METRIC = "trieye/lost_events"
# Cumulative counts, so "latest"; on the console too, because a lost event is worth a look.
OWN_METRICS = tuple(
    MetricSpec(
        name=name, aggregation="latest", targets=frozenset({"mlflow", "tensorboard", "console"})
    )
    for name in (RESTARTS_METRIC, LOST_EVENTS_METRIC)
)


class Drained(NamedTuple):
    """What one drain takes out, consistently: the points, and which events they contain."""

    points: list[MetricPoint]
    delivered: dict[str, list[Span]]
    """Per client, the event numbers accounted for (see trieye.ledger), for run.json."""
    lost_events: int


class Intake:
    """Folds clients' event batches into the aggregator exactly once each (see trieye.ledger),
    counts the events a dead sidecar process took with it, and adds the sidecar's own metrics
    (restarts, lost events, its CPU and memory as ``system/sidecar/*``) to each drain.

    `record` is the run.json this process started from (None for a new run), and `restarted`
    whether Ray restarted the actor after its process died: then the counters continue from
    the last write and the clients' numbering continues from what was written.
    """

    def __init__(
        self,
        config: TrieyeConfig,
        record: RunRecord | None,
        restarted: bool,
        run_name: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._every = config.flush_every_steps
        self._run_name = run_name
        names = {m.name for m in config.metrics}
        own = [spec for spec in OWN_METRICS if spec.name not in names]
        self._agg = MetricAggregator([*config.metrics, *own], clock())
        if restarted and record is not None and record.counters:
            # Counters continue from the last write; what came after it is counted as lost.
            self._agg.load_state_dict({"last_emitted_step": {}, "counters": record.counters})
        # The clients of an earlier actor of this run cannot reach a new one.
        spans = record.client_events if restarted and record is not None else None
        self._ledger = DeliveryLedger(spans)
        earlier_restarts = 0 if record is None else record.restarts
        self.restarts = earlier_restarts + int(restarted)
        self.lost_events = 0 if record is None else record.lost_events
        self._reported = {RESTARTS_METRIC: earlier_restarts, LOST_EVENTS_METRIC: self.lost_events}
        self._system = ProcessSampler("sidecar")
        self._system_floor: int | None = None if restarted else -1
        """System points go out only at steps above this; after a restart it is the first step
        seen, which the dead process may already have written."""
        self._last_drain_step = -1
        self._lock = threading.Lock()

    def receive(
        self, batch: list[WireEvent], client_id: str | None, first: int, acked: int
    ) -> bool:
        """Fold a batch in (a client's batch numbered from `first`, see trieye.ledger); True
        when the step has advanced `flush_every_steps` since the last drain."""
        with self._lock:
            if client_id is None:
                self._agg.add_batch(batch)
            else:
                fresh = self._ledger.receive(client_id, first, len(batch))
                if fresh == [(0, len(batch))]:
                    self._agg.add_batch(batch)
                else:
                    # Ray retried a batch that the process before this one had already written.
                    for low, high in fresh:
                        self._agg.add_batch(batch[low:high])
                self._settle(client_id, acked)
            every = self._every
            return every is not None and self._agg.max_step - self._last_drain_step >= every

    def settle(self, client_id: str, acked: int, closing: bool = False) -> None:
        """Account for the client's events below `acked`; a `closing` client is forgotten."""
        with self._lock:
            self._settle(client_id, acked)
            if closing:
                self._ledger.forget(client_id)

    def _settle(self, client_id: str, acked: int) -> None:
        lost = self._ledger.settle(client_id, acked)
        if lost:
            self.lost_events += lost
            logger.warning(
                "lost %d events of client %s: the sidecar process that had received them died "
                "before writing them (%d events lost in run %r so far, see %s)",
                lost,
                client_id,
                self.lost_events,
                self._run_name,
                LOST_EVENTS_METRIC,
            )

    def drain(self, final: bool = False) -> Drained:
        """Every point that can be written now (see `MetricAggregator.drain`), with the own
        metrics that changed."""
        with self._lock:
            self._add_own_metrics()
            points = self._agg.drain(self._clock(), final=final)
            self._last_drain_step = self._agg.max_step
            # Taken with the drain: these events are the ones the points contain.
            return Drained(points, self._ledger.state(), self.lost_events)

    def _add_own_metrics(self) -> None:
        """Queue a point of each changed own metric at the newest step. A metric's steps must
        increase, so a change waits until the step has moved past the metric's last point."""
        agg = self._agg
        step = agg.max_step
        for name, value in (
            (RESTARTS_METRIC, self.restarts),
            (LOST_EVENTS_METRIC, self.lost_events),
        ):
            if value != self._reported[name] and agg.last_emitted_step.get(name, -1) < step:
                agg.add_batch([(name, float(value), step, None)], count=False)
                self._reported[name] = value
        if self._system_floor is None and step >= 0:
            self._system_floor = step
        if self._system_floor is not None and step > self._system_floor:
            system = [
                (name, value, step, None)
                for name, value in self._system.sample().items()
                if agg.last_emitted_step.get(name, -1) < step
            ]
            agg.add_batch(system, count=False)

    def progress(self) -> tuple[int, dict[str, int]]:
        """The largest step seen and the counters (events, dropped_* ...)."""
        with self._lock:
            return self._agg.max_step, self._agg.counters

    def state_dict(self) -> dict[str, Any]:
        """The aggregation state a checkpoint carries, so a resume neither repeats nor skips
        metric steps."""
        with self._lock:
            return self._agg.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with self._lock:
            self._agg.load_state_dict(state)
