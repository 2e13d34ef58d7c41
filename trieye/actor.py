"""TrieyeActor: the one process that writes a run's metrics, checkpoints and run.json.

Threads inside the actor, so that no slow sink blocks callers:
- the "ingest" concurrency group (one thread) only folds event batches into the aggregator;
- the "io" group (one thread) saves and loads checkpoints, in submission order;
- the default group answers queries, status changes and explicit flushes;
- a daemon writer thread drains the aggregator into the sinks on the flush cadence.
`_agg_lock` guards the aggregator and the delivery ledger (held for microseconds);
`_sink_lock` serialises every write to MLflow, TensorBoard and run.json, so points reach each
sink in step order.

When the process dies, Ray restarts it (`max_restarts`) and retries the calls in flight. The
new process reads run.json back: the MLflow run, the counters, and per client the events
already written. Events the dead process had received but not written are lost; the clients'
next batches reveal how many (trieye.ledger), and they are reported as a WARNING, in run.json
(`lost_events`, `restarts`) and as the metrics `trieye/lost_events` and `trieye/restarts`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import warnings
from collections import defaultdict, deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ray
import torch

from trieye.aggregation import MetricAggregator, MetricPoint
from trieye.config import MetricSpec, Target, TrieyeConfig
from trieye.context import RunContext
from trieye.events import WireEvent
from trieye.ledger import DeliveryLedger
from trieye.persistence import Buffer, CheckpointStore, LoadedCheckpoint, Validator
from trieye.run_record import RunRecord
from trieye.sinks import ConsoleSink, MlflowSink, Sink, TensorBoardSink, is_storage_error
from trieye.system import ProcessSampler

logger = logging.getLogger("trieye")

MLFLOW_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
_TERMINAL_STATUSES = ("FINISHED", "FAILED", "KILLED")
MLFLOW_PARAM_BATCH_LIMIT = 100
MAX_HELD_STEPS = 100_000
"""Steps of points a sink holds while its disk refuses writes; older ones are dropped, counted."""
RESTARTS_METRIC = "trieye/restarts"
LOST_EVENTS_METRIC = "trieye/lost_events"
# Cumulative counts, so "latest"; on the console too, because a lost event is worth a look.
_OWN_METRICS = tuple(
    MetricSpec(
        name=name, aggregation="latest", targets=frozenset({"mlflow", "tensorboard", "console"})
    )
    for name in (RESTARTS_METRIC, LOST_EVENTS_METRIC)
)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def _warm_up_mlflow(ctx: RunContext) -> None:
    """Import MLflow and open (creating it if needed) the app's tracking store; the run's own
    files are not touched. An error here surfaces again at the first real use."""
    with contextlib.suppress(Exception):
        from mlflow import MlflowClient

        ctx.app_dir.mkdir(parents=True, exist_ok=True)
        MlflowClient(tracking_uri=ctx.mlflow_tracking_uri).get_experiment_by_name(
            ctx.experiment_name
        )


@ray.remote(concurrency_groups={"ingest": 1, "io": 1})  # type: ignore[call-overload]
class TrieyeActor:
    """Aggregates events and owns the run's MLflow run, TensorBoard writer and files.

    Ray reruns this constructor when it restarts the actor, so everything it needs to carry
    on (MLflow run id, last logged steps, counters, what each client already delivered) is
    read back from run.json. Nothing is written before the first flush with data, save,
    status change or parameter log, except the restart count after a restart.
    """

    def __init__(self, ctx: RunContext, config: TrieyeConfig) -> None:
        # The sidecar runs with num_cpus=0 next to the workers: one torch thread is plenty.
        torch.set_num_threads(1)
        self._ctx = ctx
        self._config = config
        self._record: RunRecord | None = RunRecord.load(ctx.run_json) if ctx.exists() else None
        self._resumed = self._record is not None
        with warnings.catch_warnings():
            # Ray 2.60's own was_current_actor_reconstructed reads its deprecated `actor_id`
            # property, which would print a deprecation notice at every actor start.
            warnings.simplefilter("ignore", DeprecationWarning)
            restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        self._store = CheckpointStore(
            ctx.checkpoint_dir,
            ctx.buffer_dir,
            config.keep_last_checkpoints,
            config.keep_last_buffers,
        )
        own = [spec for spec in _OWN_METRICS if spec.name not in {m.name for m in config.metrics}]
        self._agg = MetricAggregator([*config.metrics, *own], time.monotonic())
        record = self._record
        if record is not None and not restarted:
            # The clients of an earlier actor of this run cannot reach a new one.
            record.client_events = {}
        self._ledger = DeliveryLedger(None if record is None else record.client_events)
        self._restarts = (0 if record is None else record.restarts) + int(restarted)
        self._lost_events = 0 if record is None else record.lost_events
        self._reported = {
            RESTARTS_METRIC: 0 if record is None else record.restarts,
            LOST_EVENTS_METRIC: self._lost_events,
        }
        self._agg_lock = threading.Lock()
        self._sink_lock = threading.RLock()
        self._mlflow: Any = None
        self._mlflow_sink: MlflowSink | None = None
        self._tensorboard: TensorBoardSink | None = None
        self._console = ConsoleSink(ctx.run_name)
        self._purge_step: int | None = None
        self._resumed_from_step: int | None = None
        self._log_handlers: list[logging.Handler] = []
        self._last_flush_step = -1
        self._closed = False
        self._writer_error: BaseException | None = None
        self._held: dict[Target, deque[tuple[int, dict[str, float]]]] = defaultdict(deque)
        """Per sink, the points of each step not yet written (the disk refused them)."""
        self._failing: set[str] = set()
        """What cannot be written right now (a sink, run.json): reported once per outage."""
        self._points_lost: dict[str, int] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._system = ProcessSampler("sidecar")
        """This process's CPU and memory, as ``system/sidecar/*`` points (see trieye.system)."""
        self._system_floor: int | None = None if restarted else -1
        """System points go out only at steps above this; after a restart it is the first step
        seen, which the dead process may already have written."""
        if restarted:
            self._continue_after_restart()
        # MLflow takes seconds to import and to create its tracking store: done here, while the
        # caller still sets up (actor creation does not wait for __init__), and before any other
        # thread can import it (a concurrent first import of MLflow fails).
        _warm_up_mlflow(ctx)
        self._writer = threading.Thread(target=self._writer_loop, name="trieye-writer", daemon=True)
        self._writer.start()

    def _continue_after_restart(self) -> None:
        record = self._record
        if record is not None:
            # Counters continue from the last write; what came after it is counted as lost.
            if record.counters:
                self._agg.load_state_dict({"last_emitted_step": {}, "counters": record.counters})
            record.restarts = self._restarts
            record.save(self._ctx.run_json)
            self._attach_log_file()
        logger.warning(
            "the trieye actor of run %r was restarted after its process died (restart %d); "
            "events it had received but not written are lost and will be counted as %s",
            self._ctx.run_name,
            self._restarts,
            LOST_EVENTS_METRIC,
        )

    # ---------------------------------------------------------------- events

    def client_settings(self) -> dict[str, float]:
        """Batching settings for clients, so the config lives in one place."""
        return {
            "batch_size": self._config.client_batch_size,
            "batch_seconds": self._config.client_batch_seconds,
            "max_inflight_batches": self._config.client_max_inflight_batches,
            "max_pending_saves": self._config.client_max_pending_saves,
        }

    @ray.method(concurrency_group="ingest")
    def ingest(
        self, batch: list[WireEvent], client_id: str | None = None, first: int = 0, acked: int = 0
    ) -> None:
        """Fold a client's batch into the aggregator; no I/O here.

        `first` numbers the batch's first event among all the client has shipped; `acked` says
        that every batch of the client before that number has returned (see trieye.ledger).
        """
        self._ingest(batch, client_id, first, acked)

    def _ingest(
        self, batch: list[WireEvent], client_id: str | None = None, first: int = 0, acked: int = 0
    ) -> None:
        self._check_alive()
        every = self._config.flush_every_steps
        with self._agg_lock:
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
            due = every is not None and self._agg.max_step - self._last_flush_step >= every
        if due:
            self._wake.set()

    def flush(self, client_id: str | None = None, acked: int = 0, closing: bool = False) -> None:
        """Write every pending aggregate now. A client passes what it has delivered (`acked`
        events, all returned), so that events lost in a restart are counted in this write."""
        self._check_alive()
        if client_id is not None:
            with self._agg_lock:
                self._settle(client_id, acked)
                if closing:
                    self._ledger.forget(client_id)
        self._flush()

    def _settle(self, client_id: str, acked: int) -> None:
        """Count the client's events below `acked` that never reached a write (under _agg_lock)."""
        lost = self._ledger.settle(client_id, acked)
        if lost:
            self._lost_events += lost
            logger.warning(
                "lost %d events of client %s: the sidecar process that had received them died "
                "before writing them (%d events lost in run %r so far, see %s)",
                lost,
                client_id,
                self._lost_events,
                self._ctx.run_name,
                LOST_EVENTS_METRIC,
            )

    def _writer_loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._wake.wait(timeout=self._config.flush_every_seconds)
                self._wake.clear()
                if not self._stop.is_set():
                    self._flush()
        except Exception as exc:
            # Thread boundary: a dead writer must not go unnoticed, so every later call to the
            # actor raises it (see _check_alive) instead of events piling up unwritten.
            self._writer_error = exc
            logger.exception("trieye writer thread failed; the sidecar now rejects calls")

    def _check_alive(self) -> None:
        if self._writer_error is not None:
            raise RuntimeError(f"the trieye writer thread failed: {self._writer_error!r}") from (
                self._writer_error
            )
        if self._closed:
            raise RuntimeError(f"the trieye actor of run {self._ctx.run_name!r} was shut down")

    def _flush(self, final: bool = False) -> None:
        with self._sink_lock:
            with self._agg_lock:
                self._report_own_metrics()
                points = self._agg.drain(time.monotonic(), final=final)
                self._last_flush_step = self._agg.max_step
                # Taken with the drain: these events are the ones the points below contain.
                delivered = self._ledger.state()
                lost = self._lost_events
            if points or any(self._held.values()):
                self._open()
                self._write(points)
            record = self._record
            if record is not None and (
                points or delivered != record.client_events or lost != record.lost_events
            ):
                record.client_events = delivered
                record.lost_events = lost
                self._save_record()

    def _report_own_metrics(self) -> None:
        """Queue a point of each changed own metric at the newest step (under _agg_lock).

        A metric's steps must increase, so a change waits until the step has moved past the
        metric's last point.
        """
        step = self._agg.max_step
        for name, value in (
            (RESTARTS_METRIC, self._restarts),
            (LOST_EVENTS_METRIC, self._lost_events),
        ):
            if value != self._reported[name] and self._agg.last_emitted_step.get(name, -1) < step:
                self._agg.add_batch([(name, float(value), step, None)], count=False)
                self._reported[name] = value
        if self._system_floor is None and step >= 0:
            self._system_floor = step
        if self._system_floor is not None and step > self._system_floor:
            system = [
                (name, value, step, None)
                for name, value in self._system.sample().items()
                if self._agg.last_emitted_step.get(name, -1) < step
            ]
            self._agg.add_batch(system, count=False)

    def _write(self, points: list[MetricPoint]) -> None:
        """Queue `points` per sink behind any it still holds, then write each sink's queue in
        step order. A sink whose disk refuses a write keeps the rest of its queue for the next
        flush (see `_drain`), so a full disk delays points instead of losing them."""
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
                self._sink(target).write(metrics, step)
            except Exception as exc:
                if not is_storage_error(exc):
                    raise
                self._storage_failed(target, exc)
                if target == "tensorboard" and self._tensorboard is not None:
                    # Its writer thread is dead after an I/O error; the next flush opens a new
                    # event file in the same directory.
                    with contextlib.suppress(Exception):
                        self._tensorboard.close()
                    self._tensorboard = None
                excess = len(queue) - MAX_HELD_STEPS
                if excess > 0:
                    lost = sum(len(queue.popleft()[1]) for _ in range(excess))
                    self._points_lost[target] = self._points_lost.get(target, 0) + lost
                    logger.error(
                        "%s: dropped %d held metric points (more than %d steps held; %d lost "
                        "so far)",
                        target,
                        lost,
                        MAX_HELD_STEPS,
                        self._points_lost[target],
                    )
                return
            queue.popleft()
        self._storage_ok(target)

    def _storage_failed(self, what: str, exc: BaseException) -> None:
        """Report a refused write once per outage of `what`, not once per attempt."""
        if what not in self._failing:
            self._failing.add(what)
            logger.error(
                "writing %s of run %r failed (%s: %s); held and retried at every flush, the "
                "run goes on",
                what,
                self._ctx.run_name,
                type(exc).__name__,
                _first_line(exc),
            )

    def _storage_ok(self, what: str) -> None:
        if what in self._failing:
            self._failing.discard(what)
            logger.warning("writing %s of run %r works again", what, self._ctx.run_name)

    def _sink(self, target: Target) -> Sink:
        if target == "mlflow":
            assert self._mlflow_sink is not None, "the run is opened before any write"
            return self._mlflow_sink
        if target == "tensorboard":
            if self._tensorboard is None:
                self._tensorboard = TensorBoardSink(self._ctx.tensorboard_dir, self._purge_step)
            return self._tensorboard
        return self._console

    # ---------------------------------------------------------------- the run

    def _open(self) -> None:
        """Create the run's directories and MLflow run, or reattach to them (idempotent)."""
        with self._sink_lock:
            if self._mlflow is not None:
                return
            ctx = self._ctx
            for directory in (
                ctx.run_dir,
                ctx.checkpoint_dir,
                ctx.buffer_dir,
                ctx.tensorboard_dir,
                ctx.log_dir,
            ):
                directory.mkdir(parents=True, exist_ok=True)
            self._attach_log_file()
            from mlflow import MlflowClient

            # MLflow and its migrations log every table they create at INFO into the driver's
            # console; the sidecar's own log says what matters.
            for noisy in ("mlflow", "alembic"):
                logging.getLogger(noisy).setLevel(logging.WARNING)
            # The tracking URI is given here, inside the actor: it does not inherit the driver's.
            self._mlflow = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
            if self._record is None:
                self._record = self._create_mlflow_run()
            else:
                self._mlflow.get_run(self._record.mlflow_run_id)  # raises when the id is unknown
                self._mlflow.update_run(self._record.mlflow_run_id, status="RUNNING")
                self._record.starts += 1
                self._record.status = "RUNNING"
            self._mlflow_sink = MlflowSink(
                self._mlflow,
                self._record.mlflow_run_id,
                self._record.mlflow_last_logged_step,
                self._on_mlflow_cursor,
            )
            self._save_record()
            logger.info(
                "%s run %s (MLflow run %s) in %s",
                "resumed" if self._resumed else "started",
                ctx.run_name,
                self._record.mlflow_run_id,
                ctx.run_dir,
            )

    def _create_mlflow_run(self) -> RunRecord:
        ctx = self._ctx
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

    def _attach_log_file(self) -> None:
        if self._log_handlers:
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
            self._log_handlers.append(handler)
        logger.setLevel(logging.INFO)

    def _on_mlflow_cursor(self, last_logged: dict[str, int], skipped: int) -> None:
        # Raises when run.json cannot be written: the points must then not reach MLflow, or a
        # restart would log their steps a second time.
        assert self._record is not None
        self._record.mlflow_last_logged_step = last_logged
        self._record.mlflow_points_skipped = skipped
        self._save_record(strict=True)

    def _save_record(self, strict: bool = False) -> None:
        """Rewrite run.json. Unless `strict`, a disk that refuses it is reported (once per
        outage) and the next call writes it again; the record stays current in memory."""
        assert self._record is not None
        with self._agg_lock:
            self._record.last_step = max(self._record.last_step, self._agg.max_step)
            self._record.counters = self._agg.counters
        try:
            self._record.save(self._ctx.run_json)
        except OSError as exc:
            if strict:
                raise
            self._storage_failed("run.json", exc)
        else:
            self._storage_ok("run.json")

    def run_info(self) -> dict[str, Any]:
        """Identity, resume state and counters of the run (safe to call before anything is written)."""
        record = self._record
        with self._agg_lock:
            counters = self._agg.counters
            max_step = self._agg.max_step
        return {
            "actor_pid": os.getpid(),
            "run_name": self._ctx.run_name,
            "run_dir": str(self._ctx.run_dir),
            "mlflow_tracking_uri": self._ctx.mlflow_tracking_uri,
            "mlflow_experiment_id": None if record is None else record.mlflow_experiment_id,
            "mlflow_run_id": None if record is None else record.mlflow_run_id,
            "resumed": self._resumed,
            "resumed_from_step": self._resumed_from_step,
            "starts": 0 if record is None else record.starts,
            "status": None if record is None else record.status,
            "last_step": max(max_step, -1 if record is None else record.last_step),
            "last_checkpoint": None if record is None else record.last_checkpoint,
            "last_checkpoint_step": None if record is None else record.last_checkpoint_step,
            "tensorboard_purge_step": self._purge_step,
            "mlflow_points_skipped": 0 if self._mlflow_sink is None else self._mlflow_sink.skipped,
            "restarts": self._restarts,
            "lost_events": self._lost_events,
            "held_points": {
                target: sum(len(metrics) for _, metrics in queue)
                for target, queue in self._held.items()
            },
            "points_lost": dict(self._points_lost),
            **counters,
        }

    def set_status(self, status: str) -> None:
        """Record `status` in run.json and as the MLflow run status."""
        if status not in MLFLOW_STATUSES:
            raise ValueError(f"status {status!r} is not one of {MLFLOW_STATUSES}")
        with self._sink_lock:
            self._open()
            assert self._record is not None
            try:
                if status in _TERMINAL_STATUSES:
                    self._mlflow.set_terminated(self._record.mlflow_run_id, status=status)
                else:
                    self._mlflow.update_run(self._record.mlflow_run_id, status=status)
            except Exception as exc:
                if not is_storage_error(exc):
                    raise
                self._storage_failed("the MLflow run status", exc)
            self._record.status = status
            self._save_record()

    def log_params(self, params: Mapping[str, Any]) -> list[str]:
        """Log (flattened) params; return the keys whose value differs from an earlier session.

        MLflow params are immutable, so a resumed run whose config changed keeps the first
        value as the param and records the new one as the tag `param_changed.<key>`.
        """
        from mlflow.entities import Param

        flat = _flatten(params)
        with self._sink_lock:
            self._open()
            assert self._record is not None
            run_id = self._record.mlflow_run_id
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
        with self._sink_lock:
            self._open()
            assert self._record is not None
            self._mlflow.log_artifact(self._record.mlflow_run_id, local_path, artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        with self._sink_lock:
            self._open()
            assert self._record is not None
            self._mlflow.log_text(self._record.mlflow_run_id, text, artifact_file)

    # ---------------------------------------------------------------- checkpoints

    @ray.method(concurrency_group="io")
    def save_checkpoint(
        self,
        step: int,
        state: dict[str, Any],
        buffer: Buffer | None,
        is_best: bool,
        after: list[ray.ObjectRef[None]],
    ) -> Path:
        """Write a checkpoint after the caller's earlier event batches (`after`) are folded in,
        with the aggregator state flushed, so a resume neither repeats nor skips metric steps."""
        ray.wait(after, num_returns=len(after))
        self._check_alive()
        try:
            self._open()
            self._flush()
            with self._agg_lock:
                sidecar_state = self._agg.state_dict()
            path = self._store.save(step, state, buffer, is_best, sidecar_state)
            with self._sink_lock:
                assert self._record is not None
                self._record.last_checkpoint = str(path.relative_to(self._ctx.run_dir))
                self._record.last_checkpoint_step = step
                self._save_record()
        except Exception as exc:
            # Not swallowed: the caller's ObjectRef raises it too. Logged here as well because
            # a caller that never waits on the ref would otherwise learn nothing.
            if is_storage_error(exc):
                logger.error("saving the checkpoint of step %d failed: %s", step, exc)
            else:
                logger.exception("saving the checkpoint of step %d failed", step)
            raise
        logger.info("saved checkpoint %s%s", path, " with buffer" if buffer is not None else "")
        return path

    @ray.method(concurrency_group="io")
    def load_latest(
        self, validate: Validator | None = None, validate_buffer: Validator | None = None
    ) -> LoadedCheckpoint | None:
        """Load the newest usable checkpoint (see `CheckpointStore.load_latest`) and continue
        the aggregation state saved with it."""
        loaded = self._store.load_latest(validate, validate_buffer)
        if loaded is not None and loaded.sidecar_state:
            with self._agg_lock:
                self._agg.load_state_dict(loaded.sidecar_state)
        with self._sink_lock:
            # The step after the checkpoint is the first one the resumed run writes again; with
            # no checkpoint, a run seen before restarts from scratch and rewrites everything.
            if loaded is not None:
                self._purge_step = loaded.step + 1
                self._resumed_from_step = loaded.step
            elif self._resumed:
                self._purge_step = 0
            if self._tensorboard is not None:
                self._tensorboard.close()
                self._tensorboard = None
        if loaded is not None:
            logger.info("loaded checkpoint %s (step %d)", loaded.path, loaded.step)
        return loaded

    # ---------------------------------------------------------------- shutdown

    def shutdown(self) -> None:
        """Final flush, close the writers and end the MLflow run (FINISHED unless set otherwise)."""
        if self._closed:
            return
        self._stop.set()
        self._wake.set()
        self._writer.join()
        self._flush(final=True)
        with self._sink_lock:
            for target, queue in self._held.items():
                if queue:
                    logger.error(
                        "%d metric points of run %r could not be written to %s before the "
                        "sidecar shut down (the disk refused them) and are lost",
                        sum(len(metrics) for _, metrics in queue),
                        self._ctx.run_name,
                        target,
                    )
            if self._tensorboard is not None:
                with contextlib.suppress(OSError):  # a broken writer has reported already
                    self._tensorboard.close()
            if self._record is not None:
                if self._record.status == "RUNNING":
                    self.set_status("FINISHED")
                self._save_record()
            for handler in self._log_handlers:
                logger.removeHandler(handler)
                handler.close()
            self._closed = True
        if self._writer_error is not None:
            raise RuntimeError("the trieye writer thread had failed") from self._writer_error
