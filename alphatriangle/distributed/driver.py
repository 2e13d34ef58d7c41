"""The ``train()`` driver: self-play workers, the learner and the trieye sidecar in one loop."""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import ray
import torch

from alphatriangle import metric_names as m
from alphatriangle import stopping
from alphatriangle.core.algorithm import learner_sample_cost
from alphatriangle.core.buffer import snapshot_problem
from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.data_parallel import DataParallelLearner
from alphatriangle.core.learner import Learner, state_problem, weight_shapes
from alphatriangle.distributed.learner_replica import LearnerReplicas
from alphatriangle.distributed.meter import Meter, Snapshot
from alphatriangle.distributed.metrics import metric_config
from alphatriangle.distributed.periodic_eval import PeriodicEval
from alphatriangle.distributed.pool import WorkerPool
from alphatriangle.distributed.runlock import RunLock
from alphatriangle.distributed.workers import learner_threads, worker_count
from alphatriangle.errors import (
    FinalSaveError,
    NonFiniteLossError,
    SidecarLostError,
    UsageError,
)
from trieye import (
    CheckpointError,
    RunContext,
    SidecarDiedError,
    TrieyeClient,
    atomic_write_text,
    connect,
    is_storage_error,
    start_actor,
)
from trieye.system import ProcessSampler

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """How a ``train()`` call ended."""

    run: RunContext
    start_step: int
    final_step: int
    stopped_by_signal: bool
    checkpoint: Path | None
    moves_per_s: float = 0.0
    samples_per_s: float = 0.0


def train(
    cfg: AlphaTriangleConfig,
    run: RunContext,
    *,
    address: str | None = None,
    on_start: Callable[[str], None] = print,
    on_progress: Callable[[Snapshot], None] | None = None,
    tags: Mapping[str, str] | None = None,
    pool: type[WorkerPool] = WorkerPool,
) -> TrainResult:
    """Train ``run`` until ``cfg.train.max_steps`` or SIGINT/SIGTERM, then save and shut down.

    An existing run of the same name is resumed from its newest usable checkpoint. Whatever
    stops the loop (an error included), the final checkpoint is saved on the way out, and the
    run's end is recorded: FINISHED at ``max_steps``, STOPPED when a signal asked for it (both
    saved; MLflow shows FINISHED), FAILED otherwise, each with its reason. ``tags`` are set on
    the MLflow run at each start (where it came from: command, code version, user). ``pool``
    runs the self-play workers (a subclass of ``WorkerPool`` may run other actors behind the
    same loop, as ``bench/scale.py`` does). A signal
    during start-up, before the run has changed anything, raises ``KeyboardInterrupt``
    instead (see ``alphatriangle.stopping``).
    """
    launched = time.monotonic()
    with (
        stopping.handled(),
        RunLock(run.run_dir),
        _ray_session(address, run),
        _sidecar_loss_reported(run),
        ExitStack() as on_exit,
    ):
        cpus = int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
        gpu = torch.cuda.is_available()
        workers = worker_count(
            cfg.train,
            cpus,
            gpu_learner=gpu,
            eval_cfg=cfg.eval,
            simulations=cfg.mcts.simulations,
            sample_cost=learner_sample_cost(cfg),
        )
        torch.set_num_threads(learner_threads(cfg.train, os.cpu_count() or 1, workers))
        start_actor(run, metric_config())
        # Built while the sidecar's process starts: both take seconds.
        replicas = _start_replicas(cfg, gpu, on_exit)
        learner = (
            Learner(cfg, "cuda" if gpu else "cpu")
            if replicas is None
            else DataParallelLearner(cfg, "cuda" if gpu else "cpu")
        )
        stats = connect(run)
        start_step = _resume(stats, learner, run, on_start)
        if replicas is not None:
            replicas.load(learner.state_dict())
        atomic_write_text(run.config_json, cfg.model_dump_json(indent=2))
        stats.set_status("RUNNING")
        stats.set_tags(tags or {})
        pipeline = _Pipeline(cfg, run, stats, learner, workers, pool, replicas)
        status, reason, diverged = "FAILED", "failed", None  # until the loop says otherwise
        try:
            while learner.counters.step < cfg.train.max_steps and not stopping.requested():
                can_train = learner.can_train()
                # Block for episodes only when the learner has nothing to do.
                pipeline.collect(timeout=0.0 if can_train else 0.25)
                if can_train and pipeline.learn() == start_step + 1:
                    on_start(
                        f"first gradient step {time.monotonic() - launched:.1f} s after launch"
                    )
                pipeline.poll(on_progress)
            if stopping.requested():
                status, reason = "STOPPED", f"stopped by {stopping.received()}"
            else:
                status, reason = "FINISHED", "finished (max steps reached)"
        except NonFiniteLossError as err:
            diverged, reason = err, f"failed: {_one_line(err)}"
        except BaseException as err:
            reason = f"failed: {_one_line(err)}"
            raise
        finally:
            # Reached on success, on a signal and on an error alike: stop self-play, then save
            # everything trained so far, so a restart by name loses nothing.
            saved = pipeline.close(status, reason, stopping.requested, on_start)
    if diverged is not None:
        raise NonFiniteLossError(
            f"{diverged}; training stopped, and the newest checkpoint ({saved or 'none'}) holds "
            "the last finite weights: lower train.learning_rate or the loss weights, then resume"
        )
    moves_per_s, samples_per_s = pipeline.meter.rates()
    return TrainResult(
        run,
        start_step,
        learner.counters.step,
        status == "STOPPED",
        saved,
        moves_per_s,
        samples_per_s,
    )


class _Pipeline:
    """What the loop drives: the self-play workers, the learner, periodic evaluation, the
    sidecar and the progress meter."""

    def __init__(
        self,
        cfg: AlphaTriangleConfig,
        run: RunContext,
        stats: TrieyeClient,
        learner: Learner,
        workers: int,
        pool: type[WorkerPool] = WorkerPool,
        replicas: LearnerReplicas | None = None,
    ) -> None:
        self.cfg, self.stats, self.learner = cfg, stats, learner
        self.replicas = replicas
        self.checkpoint_dir = run.checkpoint_dir
        step, episodes = learner.counters.step, learner.counters.episodes
        # Seeds depend on where the run stands, so a resumed run does not replay the same games.
        gpus = float(ray.cluster_resources().get("GPU", 0.0))  # type: ignore[no-untyped-call]
        gpus -= replicas.gpus if replicas is not None else 0
        self.workers = pool(run, cfg, workers, [cfg.train.seed, episodes], gpus)
        self.workers.publish(learner.weights(), step)
        save_best = functools.partial(_save_best, stats)
        self.evals = PeriodicEval(cfg, save_best) if cfg.eval.every_steps else None
        self.meter = Meter(step, cfg.train.max_steps)
        self.system = ProcessSampler(m.SYSTEM_LEARNER, gpus=torch.cuda.is_available())

    def collect(self, timeout: float) -> None:
        """Put finished episodes into the buffer (waiting up to ``timeout`` s for one)."""
        for record in self.workers.collect(timeout):
            self.learner.add_episode(record)
            self.meter.episode(record)

    def learn(self) -> int:
        """One gradient step, then what falls due at its step: metrics, publishing weights,
        a checkpoint, an evaluation. Returns the step."""
        tc, learner = self.cfg.train, self.learner
        batch = learner.buffer.sample(tc.batch_size)
        if self.replicas is None:
            metrics = learner.step(batch)
        else:
            assert isinstance(learner, DataParallelLearner)
            metrics = self.replicas.step(learner, batch)
        step = learner.counters.step
        self.meter.trained(tc.batch_size, metrics)
        self.stats.log_dict({**metrics, **_progress(learner), **self.system.sample()}, step)
        if step % tc.weights_publish_every_steps == 0:
            self.workers.publish(learner.weights(), step)
        if step % tc.checkpoint_every_steps == 0:
            _save(self.stats, learner, with_buffer=step % tc.buffer_save_every_steps == 0)
        if self.evals is not None and step % self.cfg.eval.every_steps == 0:
            self.evals.start(learner.state_dict())
        return step

    def poll(self, on_progress: Callable[[Snapshot], None] | None) -> None:
        """Take a finished evaluation; show progress."""
        if self.evals is not None:
            self.evals.poll(self.stats, self.learner.counters)
        if on_progress is not None and (snapshot := self.meter.snapshot(self.learner)):
            on_progress(snapshot)

    def close(
        self,
        status: str,
        reason: str,
        stopping: Callable[[], bool],
        on_start: Callable[[str], None],
    ) -> Path | None:
        """Stop self-play, let a finished run's evaluation in flight report (unless
        ``stopping()``), then save the final checkpoint and record how the run ended: the
        checkpoint's path, or None if it failed."""
        self.workers.stop()
        if self.evals is not None:
            pending = self.evals.pending_step
            if status == "FINISHED" and pending is not None:
                on_start(f"waiting for the evaluation of step {pending} (Ctrl-C skips it)")
                self.evals.finish(self.stats, self.learner.counters, stopping)
            self.evals.stop()
        return _final_save(self.stats, self.learner, status, reason, self.checkpoint_dir)


def _start_replicas(
    cfg: AlphaTriangleConfig, gpu: bool, on_exit: ExitStack
) -> LearnerReplicas | None:
    """``train.learner_replicas - 1`` replica actors joined with this process as rank 0, or
    None for one learner; on a GPU learner each replica takes a GPU of the cluster."""
    count = cfg.train.learner_replicas
    if count == 1:
        return None
    gpus = float(ray.cluster_resources().get("GPU", 0.0))  # type: ignore[no-untyped-call]
    if gpu and gpus < count - 1:
        raise UsageError(
            f"train.learner_replicas = {count}: the learner is on a GPU and each replica beyond "
            f"the driver's takes one, but the Ray cluster has {gpus:g}; use at most "
            f"{int(gpus) + 1}"
        )
    replicas = LearnerReplicas(cfg, count, gpu)
    on_exit.callback(replicas.close)
    return replicas


def _progress(learner: Learner) -> dict[str, float]:
    c = learner.counters
    return {
        m.LEARNER_SAMPLES: learner.cfg.train.batch_size,
        m.BUFFER_SIZE: len(learner.buffer),
        m.EPISODES: c.episodes,
        m.SAMPLES_GENERATED: c.samples_generated,
        m.SAMPLES_TRAINED: c.samples_trained,
    }


def _resume(
    stats: TrieyeClient, learner: Learner, run: RunContext, on_start: Callable[[str], None]
) -> int:
    """Load the newest usable checkpoint into ``learner`` (files that are not one are skipped
    with a warning); for a new run, log its config. Returns the step training starts from."""
    cfg = learner.cfg
    try:
        ckpt = stats.load_latest(
            functools.partial(state_problem, shapes=weight_shapes(learner.model)),
            functools.partial(snapshot_problem, layout=learner.buffer.layout()),
        )
    except ray.exceptions.RayTaskError as err:
        if not isinstance(err.cause, CheckpointError):
            raise
        raise UsageError(
            f"run {run.run_name!r} cannot be resumed, {err.cause}; move the bad files out of "
            f"{run.checkpoint_dir} or use a new --run-name"
        ) from None
    # Nothing of the run was written up to here: a signal before this line leaves it as it
    # was (a finished run stays FINISHED); after it, a signal stops training with a final save.
    stopping.run_started()
    for warning in ckpt.warnings if ckpt else []:
        on_start(f"warning: {warning}")
    if ckpt is None and run.exists():
        # Starting over would write a second timeline into the run's MLflow run, whose
        # history is append-only: refused, like a run whose checkpoints are all unusable.
        raise UsageError(
            f"run {run.run_name!r} has no checkpoint to resume from (every save failed, or it "
            f"stopped before its first), although {run.run_dir} and its MLflow run exist; "
            "use a new --run-name"
        )
    if ckpt is None:
        flat: dict[str, Any] = {}
        for section, value in cfg.model_dump().items():
            if isinstance(value, dict):
                flat.update({f"{section}.{k}": v for k, v in value.items()})
            else:
                flat[section] = value
        stats.log_params(flat)
        stats.log_text(cfg.model_dump_json(indent=2), "config.json")
        on_start(f"new run {run.run_name!r} in {run.run_dir}")
        return 0
    learner.load_state_dict(ckpt.state)
    if ckpt.buffer is not None:
        learner.buffer.load_state_dict(ckpt.buffer)
    buffer_from = f" from step {ckpt.buffer_step})" if ckpt.buffer is not None else ")"
    on_start(
        f"resumed {run.run_name!r} at step {learner.counters.step} from {ckpt.path} "
        f"(buffer {len(learner.buffer)} positions{buffer_from}"
    )
    return learner.counters.step


def _save(stats: TrieyeClient, learner: Learner, with_buffer: bool) -> ray.ObjectRef[Any]:
    """Queue a checkpoint of the learner (and the buffer) with the sidecar; don't wait."""
    buffer = learner.buffer.state_dict() if with_buffer else None
    return _queue_save(stats, learner.counters.step, learner.state_dict(), buffer)


def _save_best(stats: TrieyeClient, step: int, state: dict[str, Any]) -> None:
    _queue_save(stats, step, state, is_best=True)


def _queue_save(
    stats: TrieyeClient,
    step: int,
    state: dict[str, Any],
    buffer: dict[str, Any] | None = None,
    is_best: bool = False,
) -> ray.ObjectRef[Any]:
    """Hand a save to the sidecar, first reporting the earlier saves that failed: a full or
    read-only disk costs those checkpoints, not the run, and this save point tries again.
    Any other failure of a save is a bug and is raised."""
    for failure in stats.failed_saves():
        if not is_storage_error(failure.error):
            raise failure.error
        # The failure shows only when a later save is queued, perhaps several saves later.
        retry = step if failure.next_step is None else failure.next_step
        log.error(
            "checkpoint save failed for step %d (%s); training goes on and the next save, at "
            "step %d, tries again",
            failure.step,
            failure.error,
            retry,
        )
    return stats.save_checkpoint(step, state, buffer=buffer, is_best=is_best)


def _one_line(err: BaseException) -> str:
    """An error as one line for a tag: its type and the first line of its message."""
    first = str(err).strip().splitlines()
    return f"{type(err).__name__}: {first[0]}" if first else type(err).__name__


def _final_save(
    stats: TrieyeClient, learner: Learner, status: str, reason: str, checkpoint_dir: Path
) -> Path | None:
    """Save the learner with its buffer, wait for the save, record ``status`` and ``reason``
    and shut the sidecar down.

    A failed save records the run as FAILED where the sidecar still can (so ``runs`` never
    shows it as running) and raises ``FinalSaveError``, unless the run is already failing
    (``status`` FAILED): then it is logged, so that it does not hide the error that stopped
    training.
    """
    step = learner.counters.step
    try:
        path = stats.saved_path(_save(stats, learner, with_buffer=True))
    except (ray.exceptions.RayError, SidecarDiedError, OSError, NonFiniteLossError) as err:
        cause = err.cause if isinstance(err, ray.exceptions.RayTaskError) else err
        message = (
            f"the final checkpoint (step {step}) could not be written: {cause}; a "
            f"restart resumes from the newest good checkpoint in {checkpoint_dir}"
        )
        if not isinstance(err, SidecarDiedError | ray.exceptions.RayActorError):
            # This one line covers the saves that failed before it, too.
            stats.failed_saves()
            if status != "FAILED":  # else the error that stopped training is the reason
                reason = f"failed: the final checkpoint (step {step}) could not be written: "
                reason += _one_line(cause)
            stats.set_status("FAILED", reason)
            stats.shutdown_actor()
        if status != "FAILED":
            raise FinalSaveError(message) from err
        log.error(message)
        return None
    stats.set_status(status, reason)
    stats.shutdown_actor()
    return path


@contextmanager
def _sidecar_loss_reported(run: RunContext) -> Iterator[None]:
    """The sidecar dead for good ends the run (nothing could be saved any more) with one line
    that says how to go on."""
    try:
        yield
    except SidecarDiedError as err:
        raise SidecarLostError(
            f"{err}; the same command resumes from the newest checkpoint in {run.checkpoint_dir}"
        ) from None


@contextmanager
def _ray_session(address: str | None, run: RunContext) -> Iterator[None]:
    """Join the cluster at ``address``, or start a local one sized to this machine; SIGINT and
    SIGTERM stay with ``alphatriangle.stopping`` throughout."""
    try:
        with _ray_init_leaves_signals_to_us():
            if address:
                ray.init(address=address, namespace=run.namespace, log_to_driver=False)
            else:
                # "local": a new instance even where another Ray runs on this machine (without
                # an address, ray.init joins the one `ray start` last recorded, or RAY_ADDRESS's,
                # and then refuses num_cpus); joining a cluster is what --address is for.
                ray.init(
                    address="local",
                    num_cpus=os.cpu_count() or 1,
                    include_dashboard=False,
                    namespace=run.namespace,
                    log_to_driver=False,
                )
        stopping.check()
        yield
    finally:
        # Also after a signal that interrupted ray.init: what it had started is stopped here.
        ray.shutdown()


@contextmanager
def _ray_init_leaves_signals_to_us() -> Iterator[None]:
    """Keep ``ray.init`` from taking SIGTERM over, and from being cut short where that breaks
    Ray, so that a signal at any moment of start-up stops the run as a Ctrl-C does.

    ray.init takes SIGTERM three times (its docstring says it overwrites the driver's
    handler): its own Python handler exits with code 15; its local node's kills the node's
    processes and exits 1; the driver's core worker installs Abseil's crash handler, which
    prints a native stack dump and aborts the process (exit 134) 3 s later. The first two go
    through ``ray._private.utils.set_sigterm_handler``, which does nothing meanwhile; the
    third is Ray's documented ``RAY_DISABLE_FAILURE_SIGNAL_HANDLER`` switch, turned on for
    this process only (in the environment, Ray's workers would inherit it), where Ray's
    ``faulthandler`` still prints the Python stacks of a crash. What the node's handler would
    clean up, ``ray.shutdown`` does on every way out, and the node's processes die with the
    driver when it quits at once (Ray's fate sharing).

    A ``KeyboardInterrupt`` while the driver connects to the node (about a second, after the
    node's processes have started) leaves a half-made core worker that crashes the process
    when it exits (SIGSEGV): a signal then waits for ``connect`` to return.
    """
    utils, constants, worker = ray._private.utils, ray._private.ray_constants, ray._private.worker
    stand_ins: list[tuple[Any, str, Any]] = [
        (utils, "set_sigterm_handler", _leave_sigterm_alone),
        (constants, "RAY_DISABLE_FAILURE_SIGNAL_HANDLER", True),
        (worker, "connect", stopping.uninterrupted(worker.connect)),
    ]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in stand_ins]
    for owner, name, value in stand_ins:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in originals:
            setattr(owner, name, value)


def _leave_sigterm_alone(handler: Callable[[int, FrameType | None], None]) -> None:
    """Stands in for ``ray._private.utils.set_sigterm_handler`` while ``ray.init`` runs."""
