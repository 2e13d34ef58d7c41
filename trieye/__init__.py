"""trieye: a stats-and-persistence sidecar for Ray programs.

Callers emit events (`client.log`, `client.log_event`); one actor per run aggregates them
into MLflow, TensorBoard and the console, and saves and loads checkpoints atomically.
"""

from trieye.aggregation import MetricAggregator, MetricPoint
from trieye.atomic import atomic_write_json, atomic_write_text
from trieye.client import (
    SaveFailure,
    SidecarDiedError,
    SidecarNotFoundError,
    TrieyeClient,
    connect,
    start_actor,
)
from trieye.config import Aggregation, MetricSpec, Target, TrieyeConfig
from trieye.context import InvalidRunName, RunContext
from trieye.events import RawMetricEvent
from trieye.persistence import (
    CheckpointError,
    CheckpointStore,
    LoadedCheckpoint,
    Validator,
    read_checkpoint,
)
from trieye.run_record import RunRecord, RunRecordError, read_run
from trieye.sinks import is_storage_error

__all__ = [
    "Aggregation",
    "CheckpointError",
    "CheckpointStore",
    "InvalidRunName",
    "LoadedCheckpoint",
    "MetricAggregator",
    "MetricPoint",
    "MetricSpec",
    "RawMetricEvent",
    "RunContext",
    "RunRecord",
    "RunRecordError",
    "SaveFailure",
    "SidecarDiedError",
    "SidecarNotFoundError",
    "Target",
    "TrieyeClient",
    "TrieyeConfig",
    "Validator",
    "atomic_write_json",
    "atomic_write_text",
    "connect",
    "is_storage_error",
    "read_checkpoint",
    "read_run",
    "start_actor",
]
