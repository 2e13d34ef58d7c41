"""Turns a stream of events into one point per metric per flush window. Pure Python, no I/O."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from trieye.config import MetricSpec, Target, validate_metric_name
from trieye.events import ContextValue, WireEvent

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricPoint:
    """One aggregate, to be written at `step` to the sinks named in `targets`."""

    name: str
    value: float
    step: int
    targets: frozenset[Target]


class _Window:
    """Running statistics of one metric since its last emitted point: O(1) memory."""

    __slots__ = ("count", "high", "latest", "latest_step", "low", "step", "total")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.total = 0.0
        self.low = math.inf
        self.high = -math.inf
        self.latest = 0.0
        self.latest_step = -1
        self.step = -1  # the window is logged at the largest step among its events


def _as_number(raw: ContextValue | None) -> float | None:
    """A context value as a float, or None when it is missing or not numeric."""
    if raw is None or isinstance(raw, str):
        return None
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None


class MetricAggregator:
    """Aggregates events per MetricSpec between drains.

    Per metric, emitted steps are strictly increasing: a window whose largest step is not past
    the metric's last emitted step (only late events from a lagging worker) is held and merged
    into the next window instead of being written out of order.
    """

    def __init__(self, specs: Sequence[MetricSpec], now: float) -> None:
        self._specs: list[MetricSpec] = []
        self._windows: list[_Window] = []
        self._last_emit_time: list[float] = []
        self._routes: dict[str, list[tuple[int, str | None]]] = {}
        self._invalid_names: set[str] = set()
        self._start_time = now
        self.last_emitted_step: dict[str, int] = {}
        self.max_step = -1
        self.events = 0
        self.dropped_nonfinite = 0
        self.dropped_invalid = 0
        self.dropped_stale = 0
        for spec in specs:
            self._add_spec(spec)

    def _add_spec(self, spec: MetricSpec) -> list[tuple[int, str | None]]:
        index = len(self._specs)
        self._specs.append(spec)
        self._windows.append(_Window())
        self._last_emit_time.append(self._start_time)
        route = self._routes.setdefault(spec.event_name, [])
        route.append((index, spec.context_key))
        return route

    def _route_unknown(self, name: str) -> list[tuple[int, str | None]]:
        """An event name without a spec is logged as its mean to MLflow and TensorBoard."""
        try:
            return self._add_spec(MetricSpec(name=validate_metric_name(name)))
        except ValueError:
            if name not in self._invalid_names:
                self._invalid_names.add(name)
                logger.error("dropping events named %r: not a valid metric name", name)
            return []

    def add(
        self, name: str, value: float, step: int, context: dict[str, ContextValue] | None
    ) -> None:
        self.add_batch([(name, value, step, context)])

    def add_batch(self, batch: Iterable[WireEvent], count: bool = True) -> None:
        """Fold events in; `count=False` for points the sidecar reports about itself, which
        are not callers' events and stay out of the counters."""
        # The hot loop of the sidecar: locals instead of attribute lookups on purpose.
        routes = self._routes
        windows = self._windows
        isfinite = math.isfinite
        max_step = self.max_step
        events = nonfinite = invalid = 0
        for name, value, step, context in batch:
            events += 1
            if step > max_step:
                max_step = step
            route = routes.get(name)
            if route is None:
                route = self._route_unknown(name)
                if not route:
                    invalid += 1
                    continue
            for index, key in route:
                if key is None:
                    number = value
                else:
                    from_context = _as_number(context.get(key)) if context else None
                    if from_context is None:
                        invalid += 1
                        continue
                    number = from_context
                if not isfinite(number):
                    nonfinite += 1
                    continue
                w = windows[index]
                w.count += 1
                w.total += number
                if number < w.low:
                    w.low = number
                if number > w.high:
                    w.high = number
                if step >= w.latest_step:
                    w.latest = number
                    w.latest_step = step
                if step > w.step:
                    w.step = step
        self.max_step = max_step
        if count:
            self.events += events
            self.dropped_nonfinite += nonfinite
            self.dropped_invalid += invalid

    def drain(self, now: float, final: bool = False) -> list[MetricPoint]:
        """Points for every window that can be emitted now; `final` drops held windows (counted)."""
        points: list[MetricPoint] = []
        for index, spec in enumerate(self._specs):
            w = self._windows[index]
            if w.count == 0:
                continue
            last = self.last_emitted_step.get(spec.name)
            elapsed = now - self._last_emit_time[index]
            if (last is not None and w.step <= last) or (
                spec.aggregation == "rate" and elapsed <= 0
            ):
                if final:
                    self.dropped_stale += w.count
                    w.reset()
                continue
            points.append(MetricPoint(spec.name, _value(spec, w, elapsed), w.step, spec.targets))
            self.last_emitted_step[spec.name] = w.step
            self._last_emit_time[index] = now
            w.reset()
        return points

    @property
    def counters(self) -> dict[str, int]:
        return {
            "events": self.events,
            "dropped_nonfinite": self.dropped_nonfinite,
            "dropped_invalid": self.dropped_invalid,
            "dropped_stale": self.dropped_stale,
        }

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state saved with each checkpoint."""
        return {"last_emitted_step": dict(self.last_emitted_step), "counters": self.counters}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's state, keeping whatever this process did before loading."""
        for name, step in state["last_emitted_step"].items():
            self.last_emitted_step[name] = max(int(step), self.last_emitted_step.get(name, -1))
        counters = state["counters"]
        self.events += int(counters["events"])
        self.dropped_nonfinite += int(counters["dropped_nonfinite"])
        self.dropped_invalid += int(counters["dropped_invalid"])
        self.dropped_stale += int(counters["dropped_stale"])


def _value(spec: MetricSpec, w: _Window, elapsed: float) -> float:
    match spec.aggregation:
        case "mean":
            return w.total / w.count
        case "sum":
            return w.total
        case "min":
            return w.low
        case "max":
            return w.high
        case "latest":
            return w.latest
        case "count":
            return float(w.count)
        case "rate":
            return w.total / elapsed
