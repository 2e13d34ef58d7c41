"""A run by name: where its data lives and the configuration it trains with."""

from __future__ import annotations

import math
import os
import stat
import tempfile
from pathlib import Path

from alphatriangle.core.buffer import buffer_bytes
from alphatriangle.core.config import AlphaTriangleConfig, EvalConfig, TrainConfig
from alphatriangle.core.features import feature_spec
from alphatriangle.errors import ConfigError, UsageError, shown
from trieye import InvalidRunName, RunContext
from trieye.context import MAX_NAME_LENGTH

APP_NAME = "alphatriangle"
DATA_DIR_OPTION = "--data-dir (or $ALPHATRIANGLE_DATA)"
"""Where the data root comes from, as error messages name it."""


def data_root() -> Path:
    """Where run data lives: ``$ALPHATRIANGLE_DATA`` or ``./.alphatriangle_data``."""
    return Path(os.environ.get("ALPHATRIANGLE_DATA", ".alphatriangle_data"))


def run_context(run_name: str, root: Path | None = None) -> RunContext:
    """The ``RunContext`` of a run of this app; ``UsageError`` for a name that is no safe
    directory name, or a data root that is no directory and cannot become one."""
    if len(run_name) > MAX_NAME_LENGTH:  # checked here so that the message cuts the name
        raise UsageError(
            f"invalid run name {shown(run_name)!r} ({len(run_name)} characters): use at most "
            f"{MAX_NAME_LENGTH}"
        )
    try:
        ctx = RunContext(root_dir=root or data_root(), app_name=APP_NAME, run_name=run_name)
    except InvalidRunName as err:
        raise UsageError(str(err)) from None
    check_path(ctx.run_dir, DATA_DIR_OPTION)
    return ctx


def check_path(path: Path, what: str, *, file: bool = False, writable: bool = False) -> None:
    """Refuse (``UsageError``, naming ``what`` gave the path) a ``path`` that cannot be a
    directory of ours (or a ``file``): something in the way is not a directory (or ``path``
    is one, for a file), the system refuses the name (too long), or, when ``writable``, this
    process cannot create files where it would (tried with a file that never gets a name)."""
    for existing in (path, *path.parents):
        try:
            is_dir = stat.S_ISDIR(existing.stat().st_mode)
        except (FileNotFoundError, NotADirectoryError):
            continue  # not there yet: what is above it decides
        except OSError as err:
            raise UsageError(f"{what}: {shown(path)}: {err.strerror}") from None
        if is_dir != (existing != path or not file):
            kind = "a directory" if is_dir else "not a directory"
            raise UsageError(f"{what}: {shown(existing)} is {kind}")
        if writable:
            _check_writable(existing if is_dir else existing.parent, what)
            if not is_dir and not os.access(existing, os.W_OK):
                raise UsageError(f"{what}: {shown(existing)} cannot be overwritten; give another")
        return


def _check_writable(directory: Path, what: str) -> None:
    # Permission bits say nothing to root, nor about read-only mounts, immutable directories
    # or /proc: only creating a file tells. An O_TMPFILE file is never linked into the folder.
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise UsageError(
            f"{what}: cannot write in {shown(directory)} ({err.strerror}); give another {what}"
        ) from None


def resolve_config(
    run: RunContext,
    config_file: Path | None = None,
    *,
    max_steps: int | None = None,
    workers: int | None = None,
    seed: int | None = None,
) -> AlphaTriangleConfig:
    """The configuration a ``train`` call runs with; reads files, writes nothing.

    A new run takes ``config_file`` (or the defaults); an existing run keeps its saved config,
    and a ``config_file`` given on resume may change search and training settings but not the
    algorithm or the network, whose checkpoints would not load. Flags override the file. Raises
    ``ConfigError`` for a config that cannot run here (e.g. a buffer larger than this machine's
    memory).
    """
    cfg = AlphaTriangleConfig.from_file(config_file) if config_file else None
    if run.config_json.exists():
        saved = AlphaTriangleConfig.from_file(run.config_json)
        if cfg is not None and cfg.algorithm != saved.algorithm:
            raise ConfigError(
                f"{shown(config_file)}: algorithm = {cfg.algorithm!r}, but run {run.run_name!r} was "
                f"created as {saved.algorithm!r} ({run.config_json}) and its checkpoints and "
                "buffer are that algorithm's; use a new --run-name"
            )
        if cfg is not None and _network(cfg) != _network(saved):
            raise ConfigError(
                f"{shown(config_file)}: its model settings differ from those run {run.run_name!r} was "
                f"created with ({run.config_json}), so its checkpoints cannot be loaded; "
                "use a new --run-name"
            )
        if seed is not None and seed != saved.train.seed:
            raise ConfigError(
                f"--seed {seed}: run {run.run_name!r} already exists with seed "
                f"{saved.train.seed}; the seed of a run is fixed at its creation"
            )
        cfg = cfg or saved
    cfg = cfg or AlphaTriangleConfig()
    flags = {"max_steps": max_steps, "num_workers": workers, "seed": seed}
    overrides = {k: v for k, v in flags.items() if v is not None}
    merged = AlphaTriangleConfig.from_dict(
        {**cfg.model_dump(), "train": {**cfg.train.model_dump(), **overrides}}, "--flags"
    )
    _check_memory(merged)
    return merged


SELFPLAY_SIMULATIONS_PER_CORE_S = 4_500.0
"""Search simulations/s of one worker core with the default network: about 70 moves/s at 64
simulations per move (``bench/selfplay.py``, 2-core box)."""
LEARNER_SAMPLES_PER_CORE_S = 1_400.0
"""Samples/s one CPU core trains at batch 128 on the same box (``bench/selfplay.py``)."""
EVAL_MOVES_PER_GAME = 60.0
"""Moves of a held-out evaluation game, roughly, for the periodic evaluation's share."""


def worker_count(
    tc: TrainConfig,
    cpus: int,
    *,
    gpu_learner: bool = False,
    eval_cfg: EvalConfig | None = None,
    simulations: int = 64,
    sample_cost: float = 1.0,
) -> int:
    """``num_workers``, or the number of self-play workers that keeps all ``cpus`` busy.

    Per self-play move, besides the worker's own core-time (one move), the pipeline spends:

    - the learner's: it trains ``replay_ratio`` samples per move, at
      ``LEARNER_SAMPLES_PER_CORE_S`` on a CPU core, while a worker core plays
      ``SELFPLAY_SIMULATIONS_PER_CORE_S / simulations`` moves/s, so ``rho = replay_ratio *
      SELFPLAY_SIMULATIONS_PER_CORE_S / simulations / LEARNER_SAMPLES_PER_CORE_S`` core-moves
      per move (about 0.2 at the defaults, 1.6 at 8 simulations), times ``sample_cost``, what
      one training sample costs relative to AlphaZero's (MuZero's unrolls ``K`` steps, each
      about one more network pass: ``1 + K``); almost none on a GPU;
    - the evaluation actor's: ``eval.games`` games of about ``EVAL_MOVES_PER_GAME`` moves every
      ``eval.every_steps`` steps, each step consuming ``batch_size / replay_ratio`` new moves, so
      ``epsilon = games * EVAL_MOVES_PER_GAME * replay_ratio / (every_steps * batch_size)``
      (0.15 at the defaults; its searches cost what a self-play move's do).

    ``W`` workers then ask for ``W * (1 + rho + epsilon)`` cores. Below ``cpus`` a core idles;
    above, everything slows in proportion, and self-play gets ``cpus / (1 + rho + epsilon)``
    cores' worth whatever ``W`` is. So ``W = ceil(cpus / (1 + rho + epsilon))``, at least one:
    2 on 2 CPUs, 6 on 8, 12 on 16 at the defaults (all ``cpus`` with a GPU learner and no
    evaluation). The learner and the evaluation actor reserve no Ray CPU, so these workers
    (one CPU each) always fit.

    More workers than the cluster's CPUs could never all be scheduled: that is refused
    (``UsageError``) rather than left waiting.
    """
    if tc.num_workers is not None:
        if tc.num_workers > cpus:
            raise UsageError(
                f"--workers / train.num_workers = {tc.num_workers}: the Ray cluster has {cpus} "
                f"CPUs and each self-play worker takes one; use at most {cpus}"
            )
        return tc.num_workers
    moves_per_core_s = SELFPLAY_SIMULATIONS_PER_CORE_S / simulations
    learner_core_s = sample_cost / LEARNER_SAMPLES_PER_CORE_S
    rho = 0.0 if gpu_learner else tc.replay_ratio * moves_per_core_s * learner_core_s
    epsilon = 0.0
    if eval_cfg is not None and eval_cfg.every_steps > 0:
        epsilon = (
            eval_cfg.games
            * EVAL_MOVES_PER_GAME
            * tc.replay_ratio
            / (eval_cfg.every_steps * tc.batch_size)
        )
    return max(1, min(cpus, math.ceil(cpus / (1.0 + rho + epsilon) - 1e-9)))


def _network(cfg: AlphaTriangleConfig) -> tuple[object, ...]:
    """The settings that shape the network's weights."""
    if cfg.algorithm == "muzero":
        return (cfg.model, cfg.muzero.value_support, cfg.muzero.reward_support)
    return (cfg.model,)


def _check_memory(cfg: AlphaTriangleConfig) -> None:
    """Refuse a replay buffer that cannot fit in this machine's memory, before anything starts
    (numpy would fail with "array is too big", or the OS kill the trainer hours later)."""
    spec, tc = feature_spec(), cfg.train
    needed = buffer_bytes(
        tc.buffer_capacity, spec.grid_shape, spec.other_dim, spec.action_dim, tc.prioritized_replay
    )
    if cfg.algorithm == "muzero":  # the move, reward and steps left of each position
        needed += tc.buffer_capacity * (2 + 4 + 4)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > total:
        raise ConfigError(
            f"train.buffer_capacity = {cfg.train.buffer_capacity}: the replay buffer would "
            f"need {needed / 2**30:.1f} GiB, more than this machine's {total / 2**30:.1f} GiB "
            "of memory; lower it"
        )
