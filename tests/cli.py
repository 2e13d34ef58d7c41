"""The real ``alphatriangle`` CLI in a subprocess, for the end-to-end test modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from mlflow.tracking import MlflowClient

from alphatriangle.distributed.run import run_context

CLI = str(Path(sys.executable).parent / "alphatriangle")

_TINY: dict[str, dict[str, object]] = {
    "mcts": {"simulations": 8},
    "train": {
        "batch_size": 16,
        "min_buffer_size": 32,
        "replay_ratio": 8.0,
        "checkpoint_every_steps": 5,
        "buffer_save_every_steps": 5,
        "weights_publish_every_steps": 3,
    },
    "eval": {"every_steps": 0},
}


def tiny_config(**sections: Mapping[str, object]) -> str:
    """TOML for a network and search small enough to train in seconds; ``sections`` override
    fields, e.g. ``tiny_config(eval={"every_steps": 2})``."""
    lines = []
    for section, fields in _TINY.items():
        lines.append(f"[{section}]")
        merged = {**fields, **sections.get(section, {})}
        lines += [f"{key} = {json.dumps(value)}" for key, value in merged.items()]
    return "\n".join(lines) + "\n"


def cli_env(workdir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # A wide console keeps `runs` table rows on one line.
    env = {**os.environ, "ALPHATRIANGLE_DATA": str(workdir / "data"), "CI": "1", "COLUMNS": "200"}
    return {**env, **(extra or {})}


def train_args(*args: str) -> list[str]:
    """``train`` on ``tiny.toml`` with one self-play worker."""
    return ["train", "--config", "tiny.toml", "--workers", "1", *args]


def run_cli(
    workdir: Path, *args: str, timeout: float = 300, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args],
        cwd=workdir,
        env=cli_env(workdir, env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(
    workdir: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """The CLI running in the background, stdout and stderr together."""
    return subprocess.Popen(
        [CLI, *args],
        cwd=workdir,
        env=cli_env(workdir, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def wait_for(
    predicate: Callable[[], object], proc: subprocess.Popen[str], seconds: float = 180
) -> None:
    """Poll ``predicate`` while ``proc`` lives; fail with its output if it dies first."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def manifest_steps(directory: Path) -> list[int]:
    """Steps of the checkpoints or buffers saved in ``directory``, oldest first."""
    return sorted(json.loads(p.read_text())["step"] for p in directory.glob("*.json"))


def metric_steps(workdir: Path, name: str, metric: str) -> list[int]:
    """The steps of ``metric`` in run ``name``'s MLflow history."""
    ctx = run_context(name, workdir / "data")
    client = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
    run_id = json.loads(ctx.run_json.read_text())["mlflow_run_id"]
    return [m.step for m in client.get_metric_history(run_id, metric)]


def assert_mlflow_clean(workdir: Path, name: str, root: Path | None = None) -> None:
    """Exactly one MLflow run for ``name``, and no metric step written twice."""
    ctx = run_context(name, root or workdir / "data")
    client = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(ctx.experiment_name)
    assert experiment is not None
    runs = [r for r in client.search_runs([experiment.experiment_id]) if r.info.run_name == name]
    assert len(runs) == 1
    for metric in runs[0].data.metrics:
        steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, metric)]
        assert steps == sorted(set(steps)), (metric, steps)
