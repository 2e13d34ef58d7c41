"""What the CLI prints for people: help without markup, the engines' versions, the run list at
80 columns (the real CLI in a subprocess)."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from alphatriangle.app.cli import _age
from alphatriangle.app.runs import app_context
from alphatriangle.distributed.runlock import RunLock
from alphatriangle.metric_names import EPISODE_SCORE, EVAL_SCORE_MEAN
from tests.cli import ok, run_cli
from trieye import RunRecord

COMMANDS = ("train", "runs", "ml", "tb", "eval", "play", "doctor")


@pytest.mark.parametrize("command", [(), *((c,) for c in COMMANDS)])
def test_help_has_no_rst_markup(workdir: Path, command: tuple[str, ...]) -> None:
    out = ok(run_cli(workdir, *command, "--help"))
    assert "Usage: alphatriangle" in out
    assert not re.search(r"``|:(class|func|meth|mod):`", out), out


def test_the_top_level_help_lists_every_command(workdir: Path) -> None:
    out = ok(run_cli(workdir, "--help"))
    listed = re.findall(r"^│ (\w+) {2,}", out, re.MULTILINE)
    assert sorted(c for c in listed if c != "--help") == sorted(COMMANDS), out


def test_doctor_prints_each_engine_version_on_its_own_unwrapped_line(workdir: Path) -> None:
    out = ok(run_cli(workdir, "doctor", "--sims", "4", env={"COLUMNS": "30"}))
    lines = out.splitlines()
    assert lines[:2] == [f"trianglengin {version('trianglengin')}", f"trimcts {version('trimcts')}"]
    assert re.fullmatch(
        r"one game, seed 0, 4 simulations/move: score \d+\.\d\d, \d+ moves, \d+ moves/s", lines[2]
    ), out
    assert len(lines) == 3, out


def _add_run(
    client: MlflowClient,
    experiment_id: str,
    workdir: Path,
    name: str,
    status: str,
    step: int | None,
    scores: dict[str, list[float]],
) -> Path:
    """A run as the sidecar leaves it: its MLflow run with ``scores`` (metric -> values, one a
    step) and its run.json; its run directory."""
    run_id = client.create_run(experiment_id, run_name=name).info.run_id
    for metric, values in scores.items():
        for i, value in enumerate(values):
            client.log_metric(run_id, metric, value, step=i)
    ctx = app_context(workdir / "data").run(name)
    ctx.run_dir.mkdir(parents=True)
    RunRecord(
        app_name=ctx.app_name,
        run_name=name,
        mlflow_experiment_id=experiment_id,
        mlflow_run_id=run_id,
        status=status,
        last_checkpoint_step=step,
    ).save(ctx.run_json)
    return ctx.run_dir


def test_runs_is_readable_at_80_columns(workdir: Path) -> None:
    app = app_context(workdir / "data")
    client = MlflowClient(tracking_uri=app.mlflow_tracking_uri)
    experiment = client.create_experiment(
        app.experiment_name, artifact_location=app.artifact_root.as_uri()
    )
    # Default run names (run-<date>-<time>): the widest a user gets without choosing one.
    finished = "run-20261205-012345"
    _add_run(
        client,
        experiment,
        workdir,
        finished,
        "FINISHED",
        12000,
        {EVAL_SCORE_MEAN: [3.5, 56.047, 41.0], EPISODE_SCORE: [2.0, 123.456]},
    )
    live = _add_run(client, experiment, workdir, "run-20261206-235959", "RUNNING", None, {})
    _add_run(client, experiment, workdir, "run-20261207-000000", "RUNNING", 2, {})
    with RunLock(live):
        listing = ok(run_cli(workdir, "runs", env={"COLUMNS": "80"}))
    lines = listing.splitlines()
    assert max(len(line) for line in lines) <= 80, listing
    age = r"\d+[sm] ago"  # written moments ago
    rows = [
        rf"{finished} +│ FINISHED +│ 12000 +│ 56\.05 +│ 123\.46 +│ {age}",
        rf"run-20261206-235959 +│ RUNNING \(pid {os.getpid()}\) +│ - +│ - +│ - +│ {age}",
        rf"run-20261207-000000 +│ DIED +│ 2 +│ - +│ - +│ {age}",
    ]
    for row in rows:
        assert sum(bool(re.fullmatch(row, line.rstrip())) for line in lines) == 1, (row, listing)
    # Every cell is on its run's line, so the table has a header, a rule and one line a run.
    assert len([line for line in lines if line.strip()]) == 2 + 1 + len(rows), listing


def test_an_age_reads_in_its_largest_whole_unit() -> None:
    ages = [timedelta(seconds=s) for s in (-3, 0, 59, 60, 3599, 3600, 86_399, 86_400, 10**6)]
    assert [_age(a) for a in ages] == [
        "0s ago",  # a clock set back since the write
        "0s ago",
        "59s ago",
        "1m ago",
        "59m ago",
        "1h ago",
        "23h ago",
        "1d ago",
        "11d ago",
    ]
