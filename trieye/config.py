"""Declarative metric config: which events become which metrics, how they aggregate, where they go."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Aggregation = Literal["mean", "sum", "min", "max", "latest", "count", "rate"]
Target = Literal["mlflow", "tensorboard", "console"]

# What MLflow accepts as a metric key; TensorBoard takes any string.
_METRIC_NAME_RE = re.compile(r"[A-Za-z0-9_\-./: ]{1,250}")
DEFAULT_TARGETS: frozenset[Target] = frozenset({"mlflow", "tensorboard"})


def validate_metric_name(name: str) -> str:
    """Return `name` if MLflow accepts it as a metric key, else raise ValueError."""
    if not isinstance(name, str) or not _METRIC_NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid metric name {name!r}: use 1 to 250 characters from letters, digits, "
            "'_', '-', '.', '/', ':' and spaces (e.g. 'loss/policy')"
        )
    return name


class MetricSpec(BaseModel):
    """One logged metric, computed from the events named `source` between two flushes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    """Name the metric is logged under (e.g. "loss/policy")."""
    source: str | None = None
    """Event name this metric reads; defaults to `name`."""
    context_key: str | None = None
    """Take the value from `event.context[context_key]` instead of `event.value`."""
    aggregation: Aggregation = "mean"
    """How the values of one flush window become one number; "rate" is sum per wall second."""
    targets: frozenset[Target] = DEFAULT_TARGETS
    """Sinks that receive the metric."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return validate_metric_name(value)

    @property
    def event_name(self) -> str:
        return self.source if self.source is not None else self.name


class TrieyeConfig(BaseModel):
    """Settings of one sidecar: metric specs, flush cadence, retention, client batching."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metrics: list[MetricSpec] = Field(default_factory=list)
    """Explicit metrics; an event name with no spec is logged as its mean to MLflow and TensorBoard."""
    flush_every_seconds: float | None = Field(default=2.0, gt=0)
    """Write aggregates to the sinks at least this often (wall seconds); None to flush by steps only."""
    flush_every_steps: int | None = Field(default=None, gt=0)
    """Also write when the largest step seen has advanced this much since the last write."""
    keep_last_checkpoints: int = Field(default=3, ge=1)
    """Checkpoints kept besides the best one."""
    keep_last_buffers: int = Field(default=2, ge=1)
    """Replay-buffer snapshots kept."""
    client_batch_size: int = Field(default=1000, ge=1)
    """A client ships its local batch when it holds this many events."""
    client_batch_seconds: float = Field(default=1.0, gt=0)
    """... or when its oldest unsent event is this old (checked on each log call)."""
    client_max_inflight_batches: int = Field(default=8, ge=1)
    """Batches a client may have in flight before it waits for the actor (bounds the actor's queue)."""
    client_max_pending_saves: int = Field(default=2, ge=1)
    """Checkpoint saves a client may have pending before the next one waits for the oldest; each
    pins its state and buffer in Ray's object store, so this bounds that memory while the actor
    is slow or restarting."""

    experiment_kind: str | None = "custom_model_development"
    """The MLflow experiment tag ``mlflow.experimentKind``, set on the experiment whenever a
    run opens: "custom_model_development" for model training, "genai_development" for GenAI
    apps; None leaves the tag alone."""

    @model_validator(mode="after")
    def _check(self) -> TrieyeConfig:
        if self.flush_every_seconds is None and self.flush_every_steps is None:
            raise ValueError("set flush_every_seconds or flush_every_steps (or both)")
        names = [spec.name for spec in self.metrics]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"metric names must be unique; repeated: {duplicates}")
        return self
