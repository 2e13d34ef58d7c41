"""The life of a run's record: its MLflow run and run.json, created or reattached once, kept
current, and ended with a status; with the params, artifacts and log file that belong to it.

No Ray here. One writer per run: the actor calls these methods under its sink lock.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from trieye.context import RunContext
from trieye.run_record import RunRecord
from trieye.sink_writer import Outages
from trieye.sinks import MlflowSink, is_storage_error

logger = logging.getLogger("trieye")

RUN_STATUSES = {
    "RUNNING": "RUNNING",
    "SCHEDULED": "SCHEDULED",
    "FINISHED": "FINISHED",
    "STOPPED": "FINISHED",
    "FAILED": "FAILED",
    "KILLED": "KILLED",
}
"""A run's statuses (run.json's ``status``) and the MLflow status each is shown as. STOPPED is a
run its caller asked to stop once its work was saved, so that it resumes where it stopped:
MLflow has no such status, and its KILLED is drawn in red, as a crash is."""
TERMINAL_STATUSES = ("FINISHED", "STOPPED", "FAILED", "KILLED")
END_REASON_TAG = "trieye.end_reason"
"""The MLflow run tag that says, in the caller's words, why the run ended."""
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
"""The experiment tag by which MLflow's UI tells model training apart from GenAI apps."""
MLFLOW_PARAM_BATCH_LIMIT = 100

Progress = Callable[[], tuple[int, dict[str, int]]]
"""The largest step seen and the aggregator's counters, for run.json."""


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params as MLflow params: ``{"a": {"b": 1}}`` becomes ``{"a.b": "1"}``."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def warm_up_mlflow(ctx: RunContext) -> None:
    """Import MLflow and open (creating it if needed) the app's tracking store; the run's own
    files are not touched. An error here surfaces again at the first real use."""
    with contextlib.suppress(Exception):
        from mlflow import MlflowClient

        ctx.app_dir.mkdir(parents=True, exist_ok=True)
        MlflowClient(tracking_uri=ctx.mlflow_tracking_uri).get_experiment_by_name(
            ctx.experiment_name
        )


class RunLog:
    """The run's ``logs/trieye.log``, with warnings on stderr beside it, while the run is open."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self._handlers: list[logging.Handler] = []

    def attach(self) -> None:
        if self._handlers:
            return  # attached already, by a restart that found the run directory
        self._ctx.log_dir.mkdir(parents=True, exist_ok=True)
        # Once "trieye" has a handler Python stops printing its warnings to stderr by itself,
        # so stderr gets its own handler next to the file.
        to_file = logging.FileHandler(self._ctx.log_dir / "trieye.log")
        to_file.setLevel(logging.INFO)
        to_stderr = logging.StreamHandler()
        to_stderr.setLevel(logging.WARNING)
        for handler in (to_file, to_stderr):
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            logger.addHandler(handler)
            self._handlers.append(handler)
        logger.setLevel(logging.INFO)

    def detach(self) -> None:
        for handler in self._handlers:
            logger.removeHandler(handler)
            handler.close()
        self._handlers = []


class RunLifecycle:
    """Opens the run (directories, MLflow run, run.json) at its first write and keeps run.json
    current; `record` is None until then for a run never written before.

    run.json is the record a restarted or resumed sidecar continues from: a disk that refuses
    it is reported once per outage (see `Outages`) and the next write tries again, with the
    record kept current in memory.
    """

    def __init__(
        self,
        ctx: RunContext,
        record: RunRecord | None,
        restarts: int,
        outages: Outages,
        progress: Progress,
        *,
        experiment_kind: str | None,
    ) -> None:
        self.ctx = ctx
        self.record = record
        self.resumed = record is not None
        """Whether the run had a run.json when this sidecar process started."""
        self.mlflow_sink: MlflowSink | None = None
        self.log = RunLog(ctx)
        self._restarts = restarts
        self._outages = outages
        self._progress = progress
        self._experiment_kind = experiment_kind
        self._mlflow: Any = None

    @property
    def is_open(self) -> bool:
        return self._mlflow is not None

    def open(self) -> bool:
        """Create the run's directories and MLflow run, or reattach to them; True when this
        call opened the run, False when it was open already."""
        if self._mlflow is not None:
            return False
        ctx = self.ctx
        for directory in (
            ctx.run_dir,
            ctx.checkpoint_dir,
            ctx.buffer_dir,
            ctx.tensorboard_dir,
            ctx.log_dir,
        ):
            directory.mkdir(parents=True, exist_ok=True)
        self.log.attach()
        from mlflow import MlflowClient

        # MLflow and its migrations log every table they create at INFO into the driver's
        # console; the sidecar's own log says what matters.
        for noisy in ("mlflow", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # The tracking URI is given here, inside the actor: it does not inherit the driver's.
        self._mlflow = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
        if self.record is None:
            self.record = self._create_mlflow_run()
        else:
            run = self._mlflow.get_run(self.record.mlflow_run_id)  # raises for an unknown id
            self._mlflow.update_run(self.record.mlflow_run_id, status="RUNNING")
            if END_REASON_TAG in run.data.tags:  # it ended before; it runs again now
                self._mlflow.delete_tag(self.record.mlflow_run_id, END_REASON_TAG)
            self.record.starts += 1
            self.record.status = "RUNNING"
            self.record.end_reason = None
        self._tag_experiment(self.record.mlflow_experiment_id)
        self.mlflow_sink = MlflowSink(
            self._mlflow,
            self.record.mlflow_run_id,
            self.record.mlflow_last_logged_step,
            self._on_mlflow_cursor,
        )
        self.save_record()
        logger.info(
            "%s run %s (MLflow run %s) in %s",
            "resumed" if self.resumed else "started",
            ctx.run_name,
            self.record.mlflow_run_id,
            ctx.run_dir,
        )
        return True

    def _create_mlflow_run(self) -> RunRecord:
        ctx = self.ctx
        experiment = self._mlflow.get_experiment_by_name(ctx.experiment_name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            experiment_id = self._mlflow.create_experiment(
                ctx.experiment_name, artifact_location=ctx.artifact_root.as_uri()
            )
        run = self._mlflow.create_run(
            experiment_id, run_name=ctx.run_name, tags={"trieye.run_dir": str(ctx.run_dir)}
        )
        return RunRecord(
            app_name=ctx.app_name,
            run_name=ctx.run_name,
            mlflow_experiment_id=experiment_id,
            mlflow_run_id=run.info.run_id,
            restarts=self._restarts,
        )

    def _tag_experiment(self, experiment_id: str) -> None:
        """Give the experiment the configured kind, also when an earlier version created it
        without one or someone chose another in the UI: the setting is what this app is."""
        kind = self._experiment_kind
        if kind is None:
            return
        experiment = self._mlflow.get_experiment(experiment_id)
        if experiment.tags.get(EXPERIMENT_KIND_TAG) != kind:
            self._mlflow.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, kind)

    def continue_after_restart(self) -> None:
        """Count the restart in run.json at once (when the run has one): a process that dies
        again before its first write must not lose it."""
        if self.record is not None:
            self.record.restarts = self._restarts
            self.record.save(self.ctx.run_json)
            self.log.attach()

    def record_checkpoint(self, path: Path, step: int) -> None:
        record = self._opened()
        record.last_checkpoint = str(path.relative_to(self.ctx.run_dir))
        record.last_checkpoint_step = step
        self.save_record()

    def close(self) -> None:
        """End the run as FINISHED unless a status was set, write run.json a last time and
        detach the log file."""
        if self.record is not None:
            if self.record.status == "RUNNING":
                self.set_status("FINISHED")
            self.save_record()
        self.log.detach()

    def info(self) -> dict[str, Any]:
        """What run.json says of the run, for `TrieyeActor.run_info` (Nones before it opens)."""
        record = self.record
        return {
            "mlflow_experiment_id": None if record is None else record.mlflow_experiment_id,
            "mlflow_run_id": None if record is None else record.mlflow_run_id,
            "resumed": self.resumed,
            "starts": 0 if record is None else record.starts,
            "status": None if record is None else record.status,
            "end_reason": None if record is None else record.end_reason,
            "last_step": -1 if record is None else record.last_step,
            "last_checkpoint": None if record is None else record.last_checkpoint,
            "last_checkpoint_step": None if record is None else record.last_checkpoint_step,
            "mlflow_points_skipped": 0 if self.mlflow_sink is None else self.mlflow_sink.skipped,
        }

    def _opened(self) -> RunRecord:
        self.open()
        assert self.record is not None
        return self.record

    def _on_mlflow_cursor(self, last_logged: dict[str, int], skipped: int) -> None:
        # Raises when run.json cannot be written: the points must then not reach MLflow, or a
        # restart would log their steps a second time.
        assert self.record is not None
        self.record.mlflow_last_logged_step = last_logged
        self.record.mlflow_points_skipped = skipped
        self.save_record(strict=True)

    def save_record(self, strict: bool = False) -> None:
        """Rewrite run.json with the current progress. Unless `strict`, a disk that refuses it
        is reported (once per outage) and the next call writes it again."""
        assert self.record is not None
        last_step, counters = self._progress()
        self.record.last_step = max(self.record.last_step, last_step)
        self.record.counters = counters
        try:
            self.record.save(self.ctx.run_json)
        except OSError as exc:
            if strict:
                raise
            self._outages.failed("run.json", exc)
        else:
            self._outages.ok("run.json")

    def set_status(self, status: str, reason: str | None = None) -> None:
        """Record `status` (one of `RUN_STATUSES`) in run.json and, as the MLflow status it
        maps to, in MLflow; a terminal one ends the MLflow run. `reason` says why the run
        ended, in run.json's ``end_reason`` and as the tag ``trieye.end_reason``. A disk that
        refuses either is reported, and the status is kept in memory for the next write of
        run.json."""
        if status not in RUN_STATUSES:
            raise ValueError(f"status {status!r} is not one of {tuple(RUN_STATUSES)}")
        record = self._opened()
        try:
            if reason is not None:
                self._mlflow.set_tag(record.mlflow_run_id, END_REASON_TAG, reason)
            if status in TERMINAL_STATUSES:
                self._mlflow.set_terminated(record.mlflow_run_id, status=RUN_STATUSES[status])
            else:
                self._mlflow.update_run(record.mlflow_run_id, status=RUN_STATUSES[status])
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            self._outages.failed("the MLflow run status", exc)
        else:
            self._outages.ok("the MLflow run status")
        record.status = status
        if reason is not None:
            record.end_reason = reason
        self.save_record()

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set MLflow run tags (a later value replaces an earlier one), e.g. MLflow's own
        ``mlflow.source.name``, ``mlflow.user`` or ``mlflow.note.content``."""
        from mlflow.entities import RunTag

        run_id = self._opened().mlflow_run_id
        self._mlflow.log_batch(run_id, tags=[RunTag(key, value) for key, value in tags.items()])

    def log_params(self, params: Mapping[str, Any]) -> list[str]:
        """Log (flattened) params; return the keys whose value differs from an earlier session.

        MLflow params are immutable, so a resumed run whose config changed keeps the first
        value as the param and records the new one as the tag `param_changed.<key>`.
        """
        from mlflow.entities import Param

        flat = flatten(params)
        run_id = self._opened().mlflow_run_id
        existing = self._mlflow.get_run(run_id).data.params
        new = [Param(key, value) for key, value in flat.items() if key not in existing]
        changed = sorted(
            key for key, value in flat.items() if key in existing and existing[key] != value
        )
        for start in range(0, len(new), MLFLOW_PARAM_BATCH_LIMIT):
            self._mlflow.log_batch(run_id, params=new[start : start + MLFLOW_PARAM_BATCH_LIMIT])
        for key in changed:
            self._mlflow.set_tag(run_id, f"param_changed.{key}", flat[key])
        if changed:
            logger.warning("params changed since the run started (kept as tags): %s", changed)
        return changed

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        run_id = self._opened().mlflow_run_id
        self._mlflow.log_artifact(run_id, local_path, artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        run_id = self._opened().mlflow_run_id
        self._mlflow.log_text(run_id, text, artifact_file)
