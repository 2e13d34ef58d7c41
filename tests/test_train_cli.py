"""The real ``alphatriangle train`` in a subprocess: smoke run, resume, SIGINT, Ray cluster."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from alphatriangle.app.runs import run_context
from tests.cli import (
    manifest_steps,
    metric_steps,
    ok,
    run_cli,
    start_cli,
    tiny_config,
    train_args,
    wait_for,
)
from tests.conftest import TRAINED, copy_trained

RAY = str(Path(sys.executable).parent / "ray")


def _train(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(workdir, *train_args(*args), timeout=240)


def _buffer_size(run_dir: Path) -> int:
    newest = sorted((run_dir / "buffers").glob("*.npz"))[-1]
    with np.load(newest, allow_pickle=False) as data:
        return int(data["size"])


def _mlflow_runs(workdir: Path, name: str) -> list[object]:
    ctx = run_context(name, workdir / "data")
    client = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(ctx.experiment_name)
    assert experiment is not None
    return [
        r
        for r in client.search_runs([experiment.experiment_id])
        if r.info.run_name == name or r.data.tags.get("mlflow.runName") == name
    ]


def _assert_strictly_increasing(steps: list[int]) -> None:
    assert steps, "no points"
    assert all(a < b for a, b in itertools.pairwise(steps)), steps


def test_a_new_run_logs_to_every_sink_then_resumes_by_name(
    workdir: Path, trained_run: Path
) -> None:
    first = (trained_run / "train.out").read_text()
    assert f"new run '{TRAINED}'" in first
    assert "mlflow ui --backend-store-uri sqlite:///" in first
    assert "tensorboard --logdir" in first
    ctx = copy_trained(trained_run, workdir)
    assert sorted(p.name for p in ctx.checkpoint_dir.glob("*.pt"))[-1].endswith("4.pt")
    saved_size = _buffer_size(ctx.run_dir)
    assert saved_size > 0
    acc = EventAccumulator(str(ctx.tensorboard_dir))
    acc.Reload()
    assert "loss/policy" in acc.Tags()["scalars"]
    [mlrun] = _mlflow_runs(workdir, TRAINED)
    run_id = mlrun.info.run_id  # type: ignore[attr-defined]
    metrics = mlrun.data.metrics  # type: ignore[attr-defined]
    for name in ("loss/policy", "loss/value", "episode/score", "episode/length", "buffer/size"):
        assert name in metrics, sorted(metrics)

    out = ok(_train(workdir, "--run-name", TRAINED, "--max-steps", "8"))
    match = re.search(
        rf"resumed '{TRAINED}' at step (\d+) from (\S+) \(buffer (\d+) positions", out
    )
    assert match, out
    assert int(match.group(1)) == 4
    assert int(match.group(3)) == saved_size
    [again] = _mlflow_runs(workdir, TRAINED)
    assert again.info.run_id == run_id  # type: ignore[attr-defined]
    for metric in ("loss/policy", "episode/score", "buffer/size"):
        steps = metric_steps(workdir, TRAINED, metric)
        _assert_strictly_increasing(steps)
    assert max(metric_steps(workdir, TRAINED, "loss/policy")) == 8
    assert json.loads(ctx.run_json.read_text())["status"] == "FINISHED"
    listing = ok(run_cli(workdir, "runs"))
    assert re.search(rf"{TRAINED} +│ FINISHED +│ 8 ", listing), listing


def test_the_run_charts_cpu_and_memory_of_each_process_in_mlflow_and_tensorboard(
    workdir: Path, trained_run: Path
) -> None:
    ctx = copy_trained(trained_run, workdir)
    [mlrun] = _mlflow_runs(workdir, TRAINED)
    metrics = mlrun.data.metrics  # type: ignore[attr-defined]
    acc = EventAccumulator(str(ctx.tensorboard_dir))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for role in ("learner", "selfplay", "sidecar"):
        for name in (f"system/{role}/cpu_percent", f"system/{role}/rss_mb"):
            assert name in metrics, sorted(metrics)
            assert name in tags, sorted(tags)
        # A process of this project holds torch and Ray: well over 50 MB, under 10 GB.
        assert 50 < metrics[f"system/{role}/rss_mb"] < 10_000
        assert metrics[f"system/{role}/cpu_percent"] >= 0


LEARNING_DIAGNOSTICS = (
    "learn/value_explained_variance",
    "learn/search_kl",
    "learn/sample_age",
    "learn/times_sampled_at_eviction",
    "eval/policy_score_mean",
    "eval/policy_length_mean",
)


def test_the_run_charts_the_learning_diagnostics_in_mlflow_and_tensorboard(workdir: Path) -> None:
    # A buffer of 32 positions and one sample trained per position generated: by step 12 the
    # self-play has generated 192 positions, so positions leave the buffer between steps.
    (workdir / "tiny.toml").write_text(
        tiny_config(
            train={"buffer_capacity": 32, "min_buffer_size": 32, "replay_ratio": 1.0},
            eval={"every_steps": 3, "games": 2, "simulations": 4},
        )
    )
    # A Ray address in the environment (another cluster's, here one that does not answer) is
    # not joined: without --address the run starts its own local Ray.
    ok(
        run_cli(
            workdir,
            *train_args("--run-name", "diag", "--max-steps", "12"),
            timeout=240,
            env={"RAY_ADDRESS": "127.0.0.1:9"},
        )
    )
    ctx = run_context("diag", workdir / "data")
    run_id = json.loads(ctx.run_json.read_text())["mlflow_run_id"]
    client = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
    history = {name: client.get_metric_history(run_id, name) for name in LEARNING_DIAGNOSTICS}
    for name, points in history.items():
        assert points, f"no {name} in MLflow"
        assert all(np.isfinite(p.value) for p in points), (name, points)
    acc = EventAccumulator(str(ctx.tensorboard_dir))
    acc.Reload()
    for name, points in history.items():
        board = {e.step: e.value for e in acc.Scalars(name)}
        assert board == pytest.approx({p.step: p.value for p in points}, rel=1e-6), name
    # Explained variance is at most 1; a KL is never negative.
    assert all(p.value <= 1.0 for p in history["learn/value_explained_variance"])
    assert all(p.value >= 0.0 for p in history["learn/search_kl"])
    # Step s trains the weights of version s - 1 on positions of versions 0..s - 1.
    assert all(0.0 <= p.value <= p.step - 1 for p in history["learn/sample_age"])
    assert all(p.value >= 0.0 for p in history["learn/times_sampled_at_eviction"])
    # The policy alone plays the same evaluation seeds, at the same steps, as the search.
    evaluated = [p.step for p in client.get_metric_history(run_id, "eval/score_mean")]
    assert [p.step for p in history["eval/policy_score_mean"]] == evaluated
    assert all(p.value >= 1.0 for p in history["eval/policy_length_mean"])


def test_a_run_resumes_with_two_learner_replicas(workdir: Path, trained_run: Path) -> None:
    # Rank 0 resumes the single learner's checkpoint and hands its state to the replica actor;
    # its gradient steps wait on the replica's (DDP's all-reduce), so reaching step 7 means
    # the replica trained its share of every batch.
    ctx = copy_trained(trained_run, workdir)
    (workdir / "tiny.toml").write_text(tiny_config(train={"learner_replicas": 2}))
    out = ok(_train(workdir, "--run-name", TRAINED, "--max-steps", "7"))
    assert f"resumed '{TRAINED}' at step 4 " in out
    match = re.search(rf"finished '{TRAINED}' at step 7 \(started at 4\); checkpoint (\S+)", out)
    assert match, out
    counters = torch.load(match.group(1), weights_only=True)["counters"]
    # Both shares of each of the 3 batches of 16 count as trained, as for one learner.
    assert (counters["step"], counters["samples_trained"]) == (7, 7 * 16)
    assert json.loads(ctx.config_json.read_text())["train"]["learner_replicas"] == 2


def test_a_second_trainer_is_refused_and_sigint_saves_for_the_next_start(workdir: Path) -> None:
    proc = start_cli(workdir, *train_args("--run-name", "sig"))
    ctx = run_context("sig", workdir / "data")
    wait_for(lambda: manifest_steps(ctx.checkpoint_dir), proc)
    second = run_cli(workdir, "train", "--config", "tiny.toml", "--run-name", "sig")
    assert second.returncode == 2
    assert f"already being trained by process {proc.pid}" in second.stdout
    assert "Traceback" not in second.stdout + second.stderr
    assert f"RUNNING (pid {proc.pid})" in run_cli(workdir, "runs").stdout

    proc.send_signal(signal.SIGINT)
    out = proc.finish()
    assert proc.returncode == 0, out
    final = re.search(r"stopped 'sig' at step (\d+)", out)
    assert final, out
    step = int(final.group(1))
    assert json.loads(ctx.run_json.read_text())["status"] == "STOPPED"

    out = ok(_train(workdir, "--run-name", "sig", "--max-steps", str(step + 2)))
    assert f"resumed 'sig' at step {step} from" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ray_head() -> Iterator[str]:
    """A Ray head on loopback with its own temp dir, stopped (and only it) afterwards."""
    # Short: Ray's socket paths inside it must fit in 107 bytes (pytest's tmp paths may not).
    temp_dir = Path(tempfile.mkdtemp(prefix="rayhead"))
    port = _free_port()
    # Ray replaces 127.0.0.1 by the machine's outward address; another loopback address
    # keeps the whole cluster on loopback.
    address = f"127.0.0.2:{port}"
    started = subprocess.run(
        [
            RAY,
            "start",
            "--head",
            "--node-ip-address=127.0.0.2",
            f"--port={port}",
            f"--temp-dir={temp_dir}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield address
    finally:
        # `ray stop` would end every Ray on the machine; stop only this head's processes
        # (gcs_server may ignore SIGTERM while shutting down, hence the SIGKILL after it).
        for sig in (signal.SIGTERM, signal.SIGKILL):
            deadline = time.monotonic() + 5
            while (pids := _head_pids(temp_dir)) and time.monotonic() < deadline:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
                time.sleep(0.2)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _head_pids(temp_dir: Path) -> list[int]:
    found = subprocess.run(["pgrep", "-f", str(temp_dir)], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def test_train_on_an_existing_cluster_continues_by_name(
    workdir: Path, trained_run: Path, ray_head: str
) -> None:
    copy_trained(trained_run, workdir)
    out = ok(_train(workdir, "--run-name", TRAINED, "--max-steps", "8", "--address", ray_head))
    assert f"resumed '{TRAINED}' at step 4" in out
    assert len(_mlflow_runs(workdir, TRAINED)) == 1  # one MLflow run for both sessions
    steps = metric_steps(workdir, TRAINED, "loss/policy")
    _assert_strictly_increasing(steps)
    assert steps[0] <= 4 < steps[-1] == 8, steps  # both sessions logged, up to the last step
