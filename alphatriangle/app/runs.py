"""Runs by name: where the app's data lives and the configuration a ``train`` call runs with."""

from __future__ import annotations

import os
from pathlib import Path

from alphatriangle.core.algorithm import check_buffer_fits, network_settings
from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.errors import ConfigError, UsageError
from trieye import AppContext, InvalidRunName, RunContext

APP_NAME = "alphatriangle"


def data_root() -> Path:
    """The data root when none is given: ``$ALPHATRIANGLE_DATA`` or ``./.alphatriangle_data``,
    as the CLI's ``--data-dir`` defaults (for scripts beside the CLI)."""
    return Path(os.environ.get("ALPHATRIANGLE_DATA", ".alphatriangle_data"))


def app_context(root: Path) -> AppContext:
    """What every run under the data root ``root`` shares: the MLflow store, the runs folder."""
    return AppContext(root_dir=root, app_name=APP_NAME)


def run_context(run_name: str, root: Path) -> RunContext:
    """The ``RunContext`` of run ``run_name`` under ``root``; ``UsageError`` for a name that is
    no safe directory name."""
    try:
        return app_context(root).run(run_name)
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
    algorithm or the network, whose checkpoints would not load. Flags override the file. Raises
    ``ConfigError`` for a config that cannot run here (e.g. a buffer larger than this machine's
    memory).
    """
    cfg = AlphaTriangleConfig.from_file(config_file) if config_file else None
    if run.config_json.exists():
        saved = AlphaTriangleConfig.from_file(run.config_json)
        if cfg is not None and cfg.algorithm != saved.algorithm:
            raise ConfigError(
                f"{config_file}: algorithm = {cfg.algorithm!r}, but run {run.run_name!r} was "
                f"created as {saved.algorithm!r} ({run.config_json}) and its checkpoints and "
                "buffer are that algorithm's; use a new --run-name"
            )
        if cfg is not None and network_settings(cfg) != network_settings(saved):
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
    check_buffer_fits(merged)
    return merged
