"""The sidecar on a real, small tmpfs that fills up: writes are held, never lost, and the run's
files stay consistent once space returns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray
from mlflow import MlflowClient

import trieye
from tests.files import fill_disk, small_disk
from trieye import MetricSpec, RunContext, TrieyeConfig

from .conftest import event_file_points, tensorboard_scalars

pytestmark = pytest.mark.usefixtures("ray_session")

NAMES = [f"m/{i:03d}" for i in range(100)]
CONFIG = TrieyeConfig(
    metrics=[MetricSpec(name=name, aggregation="latest") for name in NAMES],
    flush_every_seconds=3600.0,  # only explicit flushes write
)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "disk", "24m") as mounted:
        yield mounted


def log_steps(client: trieye.TrieyeClient, steps: range) -> None:
    """One point per metric and step: each step is flushed on its own."""
    for step in steps:
        for name in NAMES:
            client.log(name, float(step), step)
        client.flush()


def test_a_full_disk_holds_metrics_and_fails_saves_until_space_returns(disk: Path) -> None:
    ctx = RunContext(root_dir=disk, app_name="app", run_name="full")
    trieye.start_actor(ctx, CONFIG)
    client = trieye.connect(ctx)
    log_steps(client, range(0, 5))
    assert client.saved_path(client.save_checkpoint(4, {"x": 4})).exists()

    filler = fill_disk(disk)
    log_steps(client, range(5, 40))  # no exception: the sidecar holds what it cannot write
    held = client.run_info()["held_points"]
    assert held.get("mlflow", 0) > 0, held
    ref = client.save_checkpoint(39, {"x": 39}, buffer={"a": np.ones(10**6)})
    with pytest.raises(ray.exceptions.RayTaskError):
        ray.get(ref)
    [failure] = client.failed_saves()
    assert failure.step == 39
    assert isinstance(failure.error, OSError), failure

    filler.unlink()
    log_steps(client, range(40, 45))
    info = client.run_info()
    assert info["held_points"] == {"mlflow": 0, "tensorboard": 0}, info["held_points"]
    assert info["points_lost"] == {}
    assert client.saved_path(client.save_checkpoint(44, {"x": 44})).exists()
    run_id = info["mlflow_run_id"]
    client.shutdown_actor()

    mlflow = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
    for name in (NAMES[0], NAMES[-1]):
        assert [m.step for m in mlflow.get_metric_history(run_id, name)] == list(range(45))
    steps = [step for step, _ in tensorboard_scalars(ctx.tensorboard_dir, NAMES[-1])]
    assert sorted(set(steps)) == list(range(45)), steps
    # One event file before the disk filled, one after: the retries in between left none.
    assert [bool(points) for points in event_file_points(ctx.tensorboard_dir)] == [True, True]
    log = (ctx.log_dir / "trieye.log").read_text()
    assert "writing mlflow of run 'full' works again" in log
    assert "writing tensorboard of run 'full' works again" in log
    loaded = trieye.read_checkpoint(ctx.checkpoint_dir)
    assert (loaded.step, loaded.state, loaded.warnings) == (44, {"x": 44}, [])
