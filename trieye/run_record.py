"""run.json: who the run is (its MLflow run id) and what the sidecar already wrote."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from trieye.atomic import atomic_write_text
from trieye.context import RunContext


class RunRecordError(ValueError):
    """A run.json that exists but is not one trieye wrote (unreadable, or wrong fields)."""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunRecord(BaseModel):
    """Contents of run.json, rewritten atomically by the actor (its only writer)."""

    app_name: str
    run_name: str
    mlflow_experiment_id: str
    mlflow_run_id: str
    created_at: str = Field(default_factory=utc_now)
    updated_at: str = Field(default_factory=utc_now)
    status: str = "RUNNING"
    """One of RUNNING, FINISHED, STOPPED, FAILED, KILLED (see trieye.run_lifecycle)."""
    end_reason: str | None = None
    """Why the run ended, in its caller's words; None while it runs."""
    starts: int = 1
    """How many sidecar sessions opened this run (1 for a run never resumed)."""
    last_step: int = -1
    """Largest global step the sidecar has seen."""
    last_checkpoint: str | None = None
    """Path of the newest checkpoint, relative to the run directory."""
    last_checkpoint_step: int | None = None
    mlflow_last_logged_step: dict[str, int] = Field(default_factory=dict)
    """Per metric, the last step sent to MLflow; written before the points themselves so
    that a crash can cost a point but never log a step twice (MLflow is append-only)."""
    mlflow_points_skipped: int = 0
    """Points not sent to MLflow because their metric already had a point at that step or later."""
    counters: dict[str, int] = Field(default_factory=dict)
    """The aggregator's counters at the last write (events, dropped_nonfinite, ...)."""
    restarts: int = 0
    """How often Ray restarted the sidecar after its process died, over the whole run."""
    lost_events: int = 0
    """Events that reached a sidecar process which died before writing them to the sinks."""
    client_events: dict[str, list[tuple[int, int]]] = Field(default_factory=dict)
    """Per client id of the current actor, the ranges of its event numbers (start, end) that
    were written or counted as lost: what a restarted process compares the clients' next
    batches with (see trieye.ledger)."""

    @classmethod
    def load(cls, path: Path) -> RunRecord:
        return cls.model_validate_json(path.read_text())

    def save(self, path: Path) -> None:
        self.updated_at = utc_now()
        atomic_write_text(path, self.model_dump_json(indent=2) + "\n")


def read_run(ctx: RunContext) -> RunRecord | None:
    """The run's run.json, read-only (for tools beside a running sidecar); None for a run that
    has none yet. Raises RunRecordError naming the file when it cannot be used."""
    if not ctx.run_json.is_file():
        return None
    try:
        return RunRecord.load(ctx.run_json)
    except (OSError, UnicodeDecodeError, ValidationError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunRecordError(
            f"{ctx.run_json} is not a run record trieye can read ({first})"
        ) from None
