"""Runs by name: where the app's data lives and the configuration a ``train`` call runs with."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from alphatriangle.core.algorithm import check_buffer_fits, network_settings
from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.errors import ConfigError, UsageError, shown
from trieye import AppContext, InvalidRunName, RunContext
from trieye.context import MAX_NAME_LENGTH

APP_NAME = "alphatriangle"
DATA_DIR_OPTION = "--data-dir (or $ALPHATRIANGLE_DATA)"
"""Where the data root comes from, as error messages name it."""


def data_root() -> Path:
    """The data root when none is given: ``$ALPHATRIANGLE_DATA`` or ``./.alphatriangle_data``,
    as the CLI's ``--data-dir`` defaults (for scripts beside the CLI)."""
    return Path(os.environ.get("ALPHATRIANGLE_DATA", ".alphatriangle_data"))


def app_context(root: Path) -> AppContext:
    """What every run under the data root ``root`` shares: the MLflow store, the runs folder;
    ``UsageError`` for a data root that is no directory and cannot become one."""
    ctx = AppContext(root_dir=root, app_name=APP_NAME)
    check_path(ctx.runs_dir, DATA_DIR_OPTION)
    return ctx


def run_context(run_name: str, root: Path) -> RunContext:
    """The ``RunContext`` of run ``run_name`` under ``root``; ``UsageError`` for a name that is
    no safe directory name, or a data root that is no directory and cannot become one."""
    if len(run_name) > MAX_NAME_LENGTH:  # checked here so that the message cuts the name
        raise UsageError(
            f"invalid run name {shown(run_name)!r} ({len(run_name)} characters): use at most "
            f"{MAX_NAME_LENGTH}"
        )
    try:
        ctx = app_context(root).run(run_name)
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
        if cfg is not None and network_settings(cfg) != network_settings(saved):
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
    check_buffer_fits(merged)
    return merged
