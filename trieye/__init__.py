"""trieye: a stats-and-persistence sidecar for Ray programs.

Callers emit events (`client.log`, `client.log_event`); one actor per run aggregates them
into MLflow, TensorBoard and the console, and saves and loads checkpoints atomically.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

# The public API, by defining module. Imported on first use, so that a process that only needs
# RunContext (a CLI checking a run name) does not pay for importing Ray, torch and MLflow.
_EXPORTS = {
    "Aggregation": "config",
    "AppContext": "context",
    "CheckpointError": "persistence",
    "CheckpointStore": "persistence",
    "InvalidRunName": "context",
    "LoadedCheckpoint": "persistence",
    "MetricAggregator": "aggregation",
    "MetricPoint": "aggregation",
    "MetricSpec": "config",
    "ProcessSampler": "system",
    "RawMetricEvent": "events",
    "RunContext": "context",
    "RunRecord": "run_record",
    "RunRecordError": "run_record",
    "SaveFailure": "client",
    "SidecarDiedError": "client",
    "SidecarNotFoundError": "client",
    "Target": "config",
    "TrieyeClient": "client",
    "TrieyeConfig": "config",
    "Validator": "persistence",
    "atomic_write_json": "atomic",
    "atomic_write_text": "atomic",
    "connect": "client",
    "is_storage_error": "sinks",
    "read_checkpoint": "persistence",
    "read_run": "run_record",
    "start_actor": "client",
}

__all__ = [
    "Aggregation",
    "AppContext",
    "CheckpointError",
    "CheckpointStore",
    "InvalidRunName",
    "LoadedCheckpoint",
    "MetricAggregator",
    "MetricPoint",
    "MetricSpec",
    "ProcessSampler",
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

if TYPE_CHECKING:
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
    from trieye.context import AppContext, InvalidRunName, RunContext
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
    from trieye.system import ProcessSampler


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'trieye' has no attribute {name!r}")
    value = getattr(import_module(f"trieye.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
