"""TrieyeActor: the one process that writes a run's metrics, checkpoints and run.json.

Threads inside the actor, so that no slow sink blocks callers:
- the "ingest" concurrency group (one thread) only folds event batches in (trieye.intake);
- the "io" group (one thread) saves and loads checkpoints, in submission order;
- the default group answers queries, status changes and explicit flushes;
- a daemon writer thread drains the intake into the sinks on the flush cadence.
The intake's own lock guards the aggregator and the delivery ledger (held for microseconds);
`_sink_lock` serialises every write to MLflow, TensorBoard and run.json, so points reach each
sink in step order (trieye.sink_writer) and run.json stays in step with them
(trieye.run_lifecycle).

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
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ray
import torch

from trieye.config import TrieyeConfig
from trieye.context import RunContext
from trieye.events import WireEvent
from trieye.intake import LOST_EVENTS_METRIC, Intake
from trieye.persistence import Buffer, LoadedCheckpoint, Validator
from trieye.run_checkpoints import RunCheckpoints
from trieye.run_lifecycle import RunLifecycle, warm_up_mlflow
from trieye.run_record import RunRecord
from trieye.sink_writer import Outages, SinkWriter
from trieye.sinks import ConsoleSink, TensorBoardSink, is_storage_error

logger = logging.getLogger("trieye")


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
        record = RunRecord.load(ctx.run_json) if ctx.exists() else None
        with warnings.catch_warnings():
            # Ray 2.60's own was_current_actor_reconstructed reads its deprecated `actor_id`
            # property, which would print a deprecation notice at every actor start.
            warnings.simplefilter("ignore", DeprecationWarning)
            restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        if record is not None and not restarted:
            # The clients of an earlier actor of this run cannot reach a new one.
            record.client_events = {}
        self._intake = Intake(config, record, restarted, ctx.run_name)
        outages = Outages(ctx.run_name)
        self._run = RunLifecycle(
            ctx,
            record,
            self._intake.restarts,
            outages,
            self._intake.progress,
            experiment_kind=config.experiment_kind,
        )
        self._sinks = SinkWriter(
            {
                "tensorboard": TensorBoardSink(ctx.tensorboard_dir),
                "console": ConsoleSink(ctx.run_name),
            },
            outages,
        )
        self._sink_lock = threading.RLock()
        self._checkpoints = RunCheckpoints(config, self._intake, self._run, self._sink_lock)
        self._closed = False
        self._writer_error: BaseException | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        if restarted:
            self._run.continue_after_restart()
            logger.warning(
                "the trieye actor of run %r was restarted after its process died (restart %d); "
                "events it had received but not written are lost and will be counted as %s",
                ctx.run_name,
                self._intake.restarts,
                LOST_EVENTS_METRIC,
            )
        # MLflow takes seconds to import and to create its tracking store: done here, while the
        # caller still sets up (actor creation does not wait for __init__), and before any other
        # thread can import it (a concurrent first import of MLflow fails).
        warm_up_mlflow(ctx)
        self._writer = threading.Thread(target=self._writer_loop, name="trieye-writer", daemon=True)
        self._writer.start()

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
        self._check_alive()
        if self._intake.receive(batch, client_id, first, acked):
            self._wake.set()

    def flush(self, client_id: str | None = None, acked: int = 0, closing: bool = False) -> None:
        """Write every pending aggregate now. A client passes what it has delivered (`acked`
        events, all returned), so that events lost in a restart are counted in this write."""
        self._check_alive()
        if client_id is not None:
            self._intake.settle(client_id, acked, closing)
        self._flush()

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
            drained = self._intake.drain(final)
            if drained.points or self._sinks.holds_points():
                self._open()
                self._sinks.write(drained.points)
            record = self._run.record
            if record is not None and (
                drained.points
                or drained.delivered != record.client_events
                or drained.lost_events != record.lost_events
            ):
                record.client_events = drained.delivered
                record.lost_events = drained.lost_events
                self._run.save_record()

    def _open(self) -> None:
        """Open the run (idempotent); its MLflow sink joins the others."""
        with self._sink_lock:
            if self._run.open():
                assert self._run.mlflow_sink is not None
                self._sinks.sinks["mlflow"] = self._run.mlflow_sink

    # ---------------------------------------------------------------- the run

    def run_info(self) -> dict[str, Any]:
        """Identity, resume state and counters of the run (safe to call before anything is written)."""
        max_step, counters = self._intake.progress()
        run = self._run.info()
        return {
            **run,
            "actor_pid": os.getpid(),
            "run_name": self._ctx.run_name,
            "run_dir": str(self._ctx.run_dir),
            "mlflow_tracking_uri": self._ctx.mlflow_tracking_uri,
            "resumed_from_step": self._checkpoints.resumed_from_step,
            "last_step": max(max_step, run["last_step"]),
            "tensorboard_purge_step": self._checkpoints.purge_step,
            "restarts": self._intake.restarts,
            "lost_events": self._intake.lost_events,
            "held_points": self._sinks.held_points(),
            "points_lost": dict(self._sinks.points_lost),
            **counters,
        }

    def set_status(self, status: str, reason: str | None = None) -> None:
        """Record `status` (and why the run ended) in run.json and MLflow (see
        `RunLifecycle.set_status`)."""
        with self._sink_lock:
            self._open()
            self._run.set_status(status, reason)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        with self._sink_lock:
            self._open()
            self._run.set_tags(tags)

    def log_params(self, params: Mapping[str, Any]) -> list[str]:
        """Log (flattened) params; return the keys whose value differs from an earlier session
        (see `RunLifecycle.log_params`)."""
        with self._sink_lock:
            self._open()
            return self._run.log_params(params)

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        with self._sink_lock:
            self._open()
            self._run.log_artifact(local_path, artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        with self._sink_lock:
            self._open()
            self._run.log_text(text, artifact_file)

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
            return self._checkpoints.save(step, state, buffer, is_best)
        except Exception as exc:
            # Not swallowed: the caller's ObjectRef raises it too. Logged here as well because
            # a caller that never waits on the ref would otherwise learn nothing.
            if is_storage_error(exc):
                logger.error("saving the checkpoint of step %d failed: %s", step, exc)
            else:
                logger.exception("saving the checkpoint of step %d failed", step)
            raise

    @ray.method(concurrency_group="io")
    def load_latest(
        self, validate: Validator | None = None, validate_buffer: Validator | None = None
    ) -> LoadedCheckpoint | None:
        """Load the newest usable checkpoint (see `RunCheckpoints.load_latest`); TensorBoard's
        next event file purges the steps the resumed run writes again."""
        loaded = self._checkpoints.load_latest(validate, validate_buffer)
        with self._sink_lock:
            old = self._sinks.sinks["tensorboard"]
            self._sinks.sinks["tensorboard"] = TensorBoardSink(
                self._ctx.tensorboard_dir, self._checkpoints.purge_step
            )
            old.close()
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
            self._sinks.report_unwritten(self._ctx.run_name)
            with contextlib.suppress(OSError):  # a broken writer has reported already
                self._sinks.sinks["tensorboard"].close()
            self._run.close()
            self._closed = True
        if self._writer_error is not None:
            raise RuntimeError("the trieye writer thread had failed") from self._writer_error
