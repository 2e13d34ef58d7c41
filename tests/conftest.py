"""Fixtures of the end-to-end tests: work directories, a tracking store, a trained run."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

from alphatriangle.app.runs import run_context
from tests.cli import ok, run_cli, seed_tracking_store, stop_started, tiny_config, train_args
from trieye import RunContext

TINY = tiny_config(train={"checkpoint_every_steps": 2, "buffer_save_every_steps": 2})
"""The default ``tiny.toml`` of a work directory: saves every 2 steps."""

TRAINED = "trained"
"""The name of the run in ``trained_run``."""


@pytest.fixture(autouse=True)
def _no_cli_left_running() -> Iterator[None]:
    """A failed test's background CLI does not train on through the tests after it."""
    yield
    stop_started()


@pytest.fixture(scope="session")
def tracking_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow sqlite store, created once by MLflow itself."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def workdir(tmp_path: Path, tracking_store: Path) -> Path:
    """A directory to run the CLI in: ``tiny.toml`` (``TINY``), and a data root whose tracking
    store exists, as after an earlier run (the first-run path has its own tests)."""
    (tmp_path / "tiny.toml").write_text(TINY)
    seed_tracking_store(tmp_path, tracking_store)
    return tmp_path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work directory holding run ``TRAINED``, the first run of an empty data root: 4 steps
    of ``TINY``, checkpoints and buffers at steps 2 and 4; what ``train`` printed is in
    ``train.out``. Tests copy it (``copy_trained``), never change it."""
    workdir = tmp_path_factory.mktemp("trained")
    (workdir / "tiny.toml").write_text(TINY)
    out = ok(run_cli(workdir, *train_args("--run-name", TRAINED, "--max-steps", "4")))
    (workdir / "train.out").write_text(out)
    return workdir


def copy_trained(trained_run: Path, workdir: Path) -> RunContext:
    """Put a copy of ``trained_run``'s data root (run files and tracking store) in ``workdir``;
    the copied run's context."""
    shutil.rmtree(workdir / "data", ignore_errors=True)
    shutil.copytree(trained_run / "data", workdir / "data")
    return run_context(TRAINED, workdir / "data")
