"""A run by name: where its data lives and the configuration it trains with."""

from __future__ import annotations

import os
from pathlib import Path

from alphatriangle.core.buffer import buffer_bytes
from alphatriangle.core.config import AlphaTriangleConfig, TrainConfig
from alphatriangle.core.features import feature_spec
from alphatriangle.errors import ConfigError, UsageError
from trieye import InvalidRunName, RunContext

APP_NAME = "alphatriangle"


def data_root() -> Path:
    """Where run data lives: ``$ALPHATRIANGLE_DATA`` or ``./.alphatriangle_data``."""
    return Path(os.environ.get("ALPHATRIANGLE_DATA", ".alphatriangle_data"))


def run_context(run_name: str, root: Path | None = None) -> RunContext:
    """The ``RunContext`` of a run of this app; ``UsageError`` for a name that is no safe
    directory name."""
    try:
        return RunContext(root_dir=root or data_root(), app_name=APP_NAME, run_name=run_name)
    except InvalidRunName as err:
        raise UsageError(str(err)) from None


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
    network, whose checkpoints would not load. Flags override the file. Raises ``ConfigError``
    for a config that cannot run here (e.g. a buffer larger than this machine's memory).
    """
    cfg = AlphaTriangleConfig.from_file(config_file) if config_file else None
    if run.config_json.exists():
        saved = AlphaTriangleConfig.from_file(run.config_json)
        if cfg is not None and cfg.model != saved.model:
            raise ConfigError(
                f"{config_file}: its model settings differ from those run {run.run_name!r} was "
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


def worker_count(tc: TrainConfig, cpus: int) -> int:
    """``num_workers``, or one per CPU of the cluster (``cpus``) minus one for the learner, at
    least one.

    Each self-play worker reserves a whole CPU, so more than the cluster has could never all
    be scheduled: that is refused (``UsageError``) rather than left waiting.
    """
    if tc.num_workers is None:
        return max(1, cpus - 1)
    if tc.num_workers > cpus:
        raise UsageError(
            f"--workers / train.num_workers = {tc.num_workers}: the Ray cluster has {cpus} "
            f"CPUs and each self-play worker takes one; use at most {cpus}"
        )
    return tc.num_workers


def _check_memory(cfg: AlphaTriangleConfig) -> None:
    """Refuse a replay buffer that cannot fit in this machine's memory, before anything starts
    (numpy would fail with "array is too big", or the OS kill the trainer hours later)."""
    spec, tc = feature_spec(), cfg.train
    needed = buffer_bytes(
        tc.buffer_capacity, spec.grid_shape, spec.other_dim, spec.action_dim, tc.prioritized_replay
    )
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > total:
        raise ConfigError(
            f"train.buffer_capacity = {cfg.train.buffer_capacity}: the replay buffer would "
            f"need {needed / 2**30:.1f} GiB, more than this machine's {total / 2**30:.1f} GiB "
            "of memory; lower it"
        )
