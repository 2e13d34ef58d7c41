"""The ``train()`` driver: self-play workers, learner and the trieye sidecar in one loop."""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import ray
import torch

from alphatriangle.buffer import ReplayBuffer
from alphatriangle.config import AlphaTriangleConfig, TrainConfig
from alphatriangle.errors import FinalSaveError, SidecarLostError
from alphatriangle.eval_worker import EvalWorker
from alphatriangle.features import feature_spec
from alphatriangle.learner import make_optimizer, make_scheduler, train_step
from alphatriangle.model import AlphaTriangleNet
from alphatriangle.pool import WorkerPool
from alphatriangle.runlock import RunLock
from alphatriangle.selfplay import EpisodeRecord
from alphatriangle.stats import metric_config
from trieye import (
    LoadedCheckpoint,
    RunContext,
    SidecarDiedError,
    TrieyeClient,
    atomic_write_text,
    connect,
    start_actor,
)

APP_NAME = "alphatriangle"
log = logging.getLogger(__name__)


@dataclass
class Counters:
    """Run totals; saved in every checkpoint so a resumed run continues them."""

    step: int = 0
    episodes: int = 0
    samples_generated: int = 0
    samples_trained: int = 0
    simulations: int = 0
    weight_version: int = 0
    best_mean_score: float = float("-inf")
    """Best mean self-play score over 50 episodes seen at a checkpoint."""
    best_eval_score: float = float("-inf")
    """Best mean score of a periodic evaluation; its checkpoint is kept as the best one."""

    def add_episode(self, record: EpisodeRecord) -> None:
        self.episodes += 1
        self.samples_generated += record.length
        self.simulations += record.simulations


@dataclass
class Snapshot:
    """What the progress display shows; rates are over the last report interval."""

    step: int
    start_step: int
    max_steps: int
    episodes: int
    buffer_size: int
    moves_per_s: float
    samples_per_s: float
    mean_score: float
    losses: dict[str, float]
    elapsed_s: float


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


def data_root() -> Path:
    """Where run data lives: ``$ALPHATRIANGLE_DATA`` or ``./.alphatriangle_data``."""
    return Path(os.environ.get("ALPHATRIANGLE_DATA", ".alphatriangle_data"))


def run_context(run_name: str, root: Path | None = None) -> RunContext:
    """The ``RunContext`` of a run of this app."""
    return RunContext(root_dir=root or data_root(), app_name=APP_NAME, run_name=run_name)


def resolve_config(
    run: RunContext,
    config_file: Path | None = None,
    *,
    max_steps: int | None = None,
    workers: int | None = None,
    seed: int | None = None,
) -> AlphaTriangleConfig:
    """The configuration a ``train`` call runs with.

    A new run takes ``config_file`` (or the defaults); an existing run keeps its saved config,
    and a ``config_file`` given on resume may change search and training settings but not the
    network, whose checkpoints would not load. Flags override the file.
    """
    cfg = AlphaTriangleConfig.from_file(config_file) if config_file else None
    if run.config_json.exists():
        saved = AlphaTriangleConfig.from_file(run.config_json)
        if cfg is not None and cfg.model != saved.model:
            raise ValueError(
                f"{config_file}: its model settings differ from those run {run.run_name!r} was "
                f"created with ({run.config_json}), so its checkpoints cannot be loaded; "
                "use a new --run-name"
            )
        if seed is not None and seed != saved.train.seed:
            raise ValueError(
                f"--seed {seed}: run {run.run_name!r} already exists with seed "
                f"{saved.train.seed}; the seed of a run is fixed at its creation"
            )
        cfg = cfg or saved
    cfg = cfg or AlphaTriangleConfig()
    flags = {"max_steps": max_steps, "num_workers": workers, "seed": seed}
    overrides = {k: v for k, v in flags.items() if v is not None}
    train_cfg = cfg.train.model_validate({**cfg.train.model_dump(), **overrides})
    return cfg.model_copy(update={"train": train_cfg})


def train(
    cfg: AlphaTriangleConfig,
    run: RunContext,
    *,
    address: str | None = None,
    on_start: Callable[[str], None] = print,
    on_progress: Callable[[Snapshot], None] | None = None,
) -> TrainResult:
    """Train ``run`` until ``cfg.train.max_steps`` or SIGINT/SIGTERM, then save and shut down.

    An existing run of the same name is resumed from its newest good checkpoint.
    """
    tc = cfg.train
    launched = time.monotonic()
    with (
        RunLock(run.run_dir),
        _stop_on_signals() as stop,
        _ray_session(address, run),
        _sidecar_loss_reported(run),
    ):
        atomic_write_text(run.config_json, cfg.model_dump_json(indent=2))
        start_actor(run, metric_config())
        stats = connect(run)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        torch.manual_seed(tc.seed)
        model = AlphaTriangleNet(cfg.model).to(device)
        optimizer = make_optimizer(model, tc)
        scheduler = make_scheduler(optimizer, tc)
        buffer = _new_buffer(cfg)
        counters = Counters()

        ckpt = stats.load_latest()
        for warning in ckpt.warnings if ckpt else []:
            on_start(f"warning: {warning}")
        if ckpt is None:
            stats.log_params(_flat_params(cfg))
            stats.log_text(cfg.model_dump_json(indent=2), "config.json")
            on_start(f"new run {run.run_name!r} in {run.run_dir}")
        else:
            _restore(ckpt, model, optimizer, scheduler, buffer, counters)
            on_start(
                f"resumed {run.run_name!r} at step {counters.step} from {ckpt.path} "
                f"(buffer {len(buffer)} positions"
                + (f" from step {ckpt.buffer_step})" if ckpt.buffer is not None else ")")
            )
        start_step = counters.step
        stats.set_status("RUNNING")

        # Seeds depend on where the run stands, so a resumed run does not replay the same games.
        workers = WorkerPool(run, cfg, _worker_count(tc), [tc.seed, counters.episodes])
        workers.publish(model, counters.step)
        evals = _PeriodicEval(cfg) if cfg.eval.every_steps else None
        meter = _Meter(start_step)
        losses: dict[str, float] = {}
        status = "FAILED"
        try:
            while counters.step < tc.max_steps and not stop.requested:
                can_train = len(buffer) >= tc.min_buffer_size and (
                    counters.samples_trained + tc.batch_size
                    <= tc.replay_ratio * counters.samples_generated
                )
                # Block for episodes only when the learner has nothing to do.
                for record in workers.collect(timeout=0.0 if can_train else 0.25):
                    buffer.add_episode(record)
                    counters.add_episode(record)
                    meter.episode(record)
                if not can_train:
                    _maybe_report(on_progress, meter, counters, tc.max_steps, buffer, losses)
                    continue

                batch = buffer.sample(tc.batch_size)
                result = train_step(model, optimizer, scheduler, batch, tc, device)
                if tc.prioritized_replay:
                    buffer.update_priorities(batch.indices, result.priorities)
                counters.step += 1
                counters.samples_trained += tc.batch_size
                meter.trained(tc.batch_size)
                if counters.step == start_step + 1:
                    on_start(
                        f"first gradient step {time.monotonic() - launched:.1f} s after launch"
                    )
                losses = result.metrics
                for name, value in result.metrics.items():
                    stats.log(name, value, counters.step)
                stats.log("learner/samples", tc.batch_size, counters.step)
                stats.log("buffer/size", len(buffer), counters.step)
                stats.log("progress/episodes", counters.episodes, counters.step)
                stats.log("progress/samples_generated", counters.samples_generated, counters.step)
                stats.log("progress/samples_trained", counters.samples_trained, counters.step)

                if counters.step % tc.weights_publish_every_steps == 0:
                    workers.publish(model, counters.step)
                    counters.weight_version = counters.step
                if counters.step % tc.checkpoint_every_steps == 0:
                    counters.best_mean_score = max(counters.best_mean_score, meter.mean_score())
                    with_buffer = counters.step % tc.buffer_save_every_steps == 0
                    _save(stats, counters, model, optimizer, scheduler, buffer, with_buffer)
                if evals is not None:
                    if counters.step % cfg.eval.every_steps == 0:
                        evals.start(_checkpoint_state(counters, model, optimizer, scheduler))
                    evals.poll(stats, counters)
                _maybe_report(on_progress, meter, counters, tc.max_steps, buffer, losses)
            status = "KILLED" if stop.requested else "FINISHED"
        finally:
            # Reached on success, on a signal and on an error alike: stop self-play, then save
            # everything trained so far, so a restart by name loses nothing.
            workers.stop()
            if evals is not None:
                if status == "FINISHED":
                    evals.finish(stats, counters, stop, on_start)
                evals.stop()
            counters.best_mean_score = max(counters.best_mean_score, meter.mean_score())
            saved_path = _final_save(
                stats,
                lambda: _save(stats, counters, model, optimizer, scheduler, buffer, True),
                counters.step,
                status,
                run.checkpoint_dir,
            )
        return TrainResult(
            run=run,
            start_step=start_step,
            final_step=counters.step,
            stopped_by_signal=stop.requested,
            checkpoint=saved_path,
            moves_per_s=meter.rates()[0],
            samples_per_s=meter.rates()[1],
        )


class _PeriodicEval:
    """Evaluations on an ``EvalWorker``, one at a time, never waited for by the loop.

    Each evaluation keeps a copy of the checkpoint state it scored, so that when its result
    arrives (steps later) and beats the best so far, exactly those weights are saved as best.
    """

    def __init__(self, cfg: AlphaTriangleConfig) -> None:
        self.worker = EvalWorker.remote(cfg)  # type: ignore[attr-defined]
        self.pending: tuple[ray.ObjectRef[Any], dict[str, Any]] | None = None

    def start(self, state: dict[str, Any]) -> None:
        if self.pending is None:
            snapshot = copy.deepcopy(state)
            self.pending = (self.worker.evaluate.remote(snapshot["model"]), snapshot)

    def poll(self, stats: TrieyeClient, counters: Counters) -> None:
        if self.pending is None or not ray.wait([self.pending[0]], timeout=0)[0]:
            return
        ref, snapshot = self.pending
        self.pending = None
        step = snapshot["counters"]["step"]
        try:
            summary = ray.get(ref)
        except ray.exceptions.RayError as err:
            # The actor is restarted by Ray (``max_restarts``); training never waits on it.
            log.warning("evaluation of step %d failed (%s); the next one retries", step, err)
            return
        stats.log("eval/score_mean", summary.mean, step)
        stats.log("eval/score_median", summary.median, step)
        stats.log("eval/score_max", summary.max, step)
        stats.log("eval/length_mean", summary.mean_length, step)
        if summary.mean > counters.best_eval_score:
            counters.best_eval_score = summary.mean
            snapshot["counters"]["best_eval_score"] = summary.mean
            _queue_save(stats, step, snapshot, is_best=True)

    def finish(
        self,
        stats: TrieyeClient,
        counters: Counters,
        stop: _StopFlag,
        on_start: Callable[[str], None],
    ) -> None:
        """Wait for the evaluation in flight, so a finished run reports (and keeps as best)
        what it scored. Ctrl-C or SIGTERM skips the wait."""
        if self.pending is None:
            return
        step = self.pending[1]["counters"]["step"]
        on_start(f"waiting for the evaluation of step {step} (Ctrl-C skips it)")
        while not stop.requested and not ray.wait([self.pending[0]], timeout=0.25)[0]:
            pass
        self.poll(stats, counters)

    def stop(self) -> None:
        ray.kill(self.worker)


def _worker_count(tc: TrainConfig) -> int:
    """``num_workers``, or one per CPU Ray sees minus one for the learner, at least one."""
    if tc.num_workers is not None:
        return tc.num_workers
    return max(1, int(ray.cluster_resources().get("CPU", 1)) - 1)  # type: ignore[no-untyped-call]


def _new_buffer(cfg: AlphaTriangleConfig) -> ReplayBuffer:
    spec = feature_spec()
    tc = cfg.train
    return ReplayBuffer(
        capacity=tc.buffer_capacity,
        grid_shape=spec.grid_shape,
        other_dim=spec.other_dim,
        action_dim=spec.action_dim,
        prioritized=tc.prioritized_replay,
        alpha=tc.per_alpha,
        beta=tc.per_beta,
        seed=tc.seed,
    )


def _checkpoint_state(
    counters: Counters,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    return {
        "model": _on_cpu(model.state_dict()),
        "optimizer": _on_cpu(optimizer.state_dict()),
        "scheduler": scheduler.state_dict(),
        "counters": dataclasses.asdict(counters),
        "rng": {"torch": torch.get_rng_state()},
    }


def _on_cpu(value: Any) -> Any:
    """`value` with every tensor in it moved to the CPU (a no-op for a CPU learner). The state
    goes to the sidecar and the eval worker, CPU actors from which Ray hides any GPU: they could
    not unpickle a CUDA tensor."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _on_cpu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_on_cpu(item) for item in value)
    return value


def _save(
    stats: TrieyeClient,
    counters: Counters,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    buffer: ReplayBuffer,
    with_buffer: bool,
) -> ray.ObjectRef[Any]:
    """Queue a checkpoint of the learner (and the buffer) with the sidecar; don't wait."""
    state = _checkpoint_state(counters, model, optimizer, scheduler)
    snapshot = buffer.state_dict() if with_buffer else None
    return _queue_save(stats, counters.step, state, snapshot)


def _final_save(
    stats: TrieyeClient,
    save: Callable[[], ray.ObjectRef[Any]],
    step: int,
    status: str,
    checkpoint_dir: Path,
) -> Path | None:
    """Queue the last ``save`` (of step ``step``), record ``status``, wait for the save and
    shut the sidecar down.

    A failure raises ``FinalSaveError``, unless the run is already failing (``status``
    FAILED): then it is logged, so that it does not hide the error that stopped training.
    """
    try:
        final = save()
        stats.set_status(status)
        path = stats.saved_path(final)
        stats.shutdown_actor()
        return path
    except (ray.exceptions.RayError, SidecarDiedError) as err:
        cause = err.cause if isinstance(err, ray.exceptions.RayTaskError) else err
        message = (
            f"the final checkpoint (step {step}) could not be written: {cause}; a "
            f"restart resumes from the newest good checkpoint in {checkpoint_dir}"
        )
        if status != "FAILED":
            raise FinalSaveError(message) from err
        log.error(message)
        return None


def _queue_save(
    stats: TrieyeClient,
    step: int,
    state: dict[str, Any],
    buffer: dict[str, np.ndarray] | None = None,
    is_best: bool = False,
) -> ray.ObjectRef[Any]:
    """Hand a save to the sidecar. The client raises a failure of an earlier save here: it is
    reported loudly and this save goes ahead, so a full or read-only disk costs checkpoints,
    not the run, and the next save point retries."""
    try:
        return stats.save_checkpoint(step, state, buffer=buffer, is_best=is_best)
    except ray.exceptions.RayTaskError as err:
        log.error("checkpoint save failed (%s); training goes on, saving again now", err.cause)
        return stats.save_checkpoint(step, state, buffer=buffer, is_best=is_best)


def _restore(
    ckpt: LoadedCheckpoint,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    buffer: ReplayBuffer,
    counters: Counters,
) -> None:
    state = ckpt.state
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    for name, value in state["counters"].items():
        setattr(counters, name, value)
    torch.set_rng_state(state["rng"]["torch"])
    if ckpt.buffer is not None:
        buffer.load_state_dict(ckpt.buffer)


def _flat_params(cfg: AlphaTriangleConfig) -> dict[str, Any]:
    dump = cfg.model_dump()
    return {f"{section}.{k}": v for section, fields in dump.items() for k, v in fields.items()}


class _Meter:
    """Recent self-play and learner throughput for the progress display."""

    def __init__(self, start_step: int) -> None:
        self.start_step = start_step
        self.start = time.monotonic()
        self.scores: deque[float] = deque(maxlen=50)
        self.window_start = self.start
        self.window_moves = 0
        self.window_samples = 0
        self.previous_window = (0.0, 0, 0)
        """Span, moves and samples of the last full window: the display's rates cover it and
        the current one, so they never read 0 just after a window starts."""
        self.last_report = 0.0
        self.total_moves = 0
        self.total_samples = 0

    def episode(self, record: EpisodeRecord) -> None:
        self.scores.append(record.score)
        self.window_moves += record.length
        self.total_moves += record.length

    def trained(self, samples: int) -> None:
        self.window_samples += samples
        self.total_samples += samples

    def rates(self) -> tuple[float, float]:
        """Self-play moves/s and learner samples/s since the workers started."""
        span = max(time.monotonic() - self.start, 1e-9)
        return self.total_moves / span, self.total_samples / span

    def mean_score(self) -> float:
        return float(np.mean(self.scores)) if self.scores else float("-inf")


def _maybe_report(
    on_progress: Callable[[Snapshot], None] | None,
    meter: _Meter,
    counters: Counters,
    max_steps: int,
    buffer: ReplayBuffer,
    losses: dict[str, float],
) -> None:
    now = time.monotonic()
    if on_progress is None or now - meter.last_report < 0.5:
        return
    window = now - meter.window_start
    previous_span, previous_moves, previous_samples = meter.previous_window
    span = max(previous_span + window, 1e-9)
    on_progress(
        Snapshot(
            step=counters.step,
            start_step=meter.start_step,
            max_steps=max_steps,
            episodes=counters.episodes,
            buffer_size=len(buffer),
            moves_per_s=(previous_moves + meter.window_moves) / span,
            samples_per_s=(previous_samples + meter.window_samples) / span,
            mean_score=meter.mean_score(),
            losses=losses,
            elapsed_s=now - meter.start,
        )
    )
    meter.last_report = now
    if window > 10:
        meter.previous_window = (window, meter.window_moves, meter.window_samples)
        meter.window_start, meter.window_moves, meter.window_samples = now, 0, 0


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


@dataclass
class _StopFlag:
    requested: bool = False


@contextmanager
def _stop_on_signals() -> Iterator[_StopFlag]:
    """First SIGINT/SIGTERM asks the loop to stop and save; a second SIGINT exits at once.

    Exiting at once loses at most the work since the last checkpoint: every file the sidecar
    writes is written atomically, so nothing on disk is left half-written.
    """
    flag = _StopFlag()

    def handler(signum: int, frame: FrameType | None) -> None:
        if flag.requested and signum == signal.SIGINT:
            os._exit(130)
        flag.requested = True
        print(
            f"\n{signal.Signals(signum).name}: stopping, saving a final checkpoint "
            "(Ctrl-C again to quit at once)",
            flush=True,
        )

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def _ray_session(address: str | None, run: RunContext) -> Iterator[None]:
    """Join the cluster at ``address``, or start a local one sized to this machine."""
    if address:
        ray.init(address=address, namespace=run.namespace, log_to_driver=False)
    else:
        ray.init(
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            namespace=run.namespace,
            log_to_driver=False,
        )
    try:
        yield
    finally:
        ray.shutdown()
