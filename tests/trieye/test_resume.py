"""Crash, restart Ray, resume the run by name: one MLflow run, no repeated steps anywhere."""

import json
from pathlib import Path

import ray
import torch
from mlflow import MlflowClient

import trieye
from trieye import MetricSpec, RunContext, TrieyeConfig

from .conftest import start_ray, tensorboard_scalars

CONFIG = TrieyeConfig(
    metrics=[MetricSpec(name="episode/count", source="episode_end", aggregation="count")],
    flush_every_seconds=3600,  # only explicit flushes, so the windows are exact
)


def train(
    client: trieye.TrieyeClient, steps: range, offset: float, save_at: int | None = None
) -> None:
    """Log one loss and one episode per step, flush every 2 steps, save at `save_at`."""
    for step in steps:
        client.log("loss", offset + step, step)
        client.log_event("episode_end", step, {"length": 3})
        if step % 2 == 0:
            client.flush()
        if step == save_at:
            ray.get(
                client.save_checkpoint(step, {"counters": {"episodes": step}, "w": torch.ones(2)})
            )


def test_resume_after_a_crash_continues_without_repeating_steps(tmp_path: Path) -> None:
    ctx = RunContext(root_dir=tmp_path, app_name="app", run_name="resumable")

    # Session 1 logs to step 10, checkpoints at 6, then dies without any shutdown.
    if ray.is_initialized():
        ray.shutdown()  # the Ray other tests share: this test needs its own two in turn
    start_ray()
    try:
        actor = trieye.start_actor(ctx, CONFIG)
        client = trieye.connect(ctx)
        assert client.load_latest() is None
        assert client.log_params({"lr": 0.1, "max_steps": 10}) == []
        train(client, range(1, 11), offset=0.0, save_at=6)
        first = client.run_info()
        client.close()
        ray.kill(actor, no_restart=True)
    finally:
        ray.shutdown()
    assert json.loads(ctx.run_json.read_text())["mlflow_last_logged_step"]["loss"] == 10

    # Session 2: a new Ray, the same run name; training restarts after the checkpoint.
    start_ray()
    try:
        trieye.start_actor(ctx, CONFIG)
        client = trieye.connect(ctx)
        loaded = client.load_latest()
        assert loaded is not None
        assert loaded.step == 6
        assert loaded.warnings == []
        assert loaded.state["counters"] == {"episodes": 6}
        assert client.log_params({"lr": 0.1, "max_steps": 14}) == ["max_steps"]
        train(client, range(loaded.step + 1, 15), offset=1000.0)
        second = client.run_info()
        client.shutdown_actor()
    finally:
        ray.shutdown()

    assert second["resumed"]
    assert second["resumed_from_step"] == 6
    assert second["mlflow_run_id"] == first["mlflow_run_id"]
    assert second["tensorboard_purge_step"] == 7
    # Events counted up to the checkpoint (6 steps x 2) continue with the 8 resumed steps x 2.
    assert first["events"] == 20
    assert second["events"] == 12 + 16
    # Replayed points at steps 8 and 10 already existed in MLflow: loss and episode/count.
    assert second["mlflow_points_skipped"] == 4

    mlflow = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
    experiment = mlflow.get_experiment_by_name("app")
    assert experiment is not None
    runs = mlflow.search_runs(
        [experiment.experiment_id], filter_string="attributes.run_name = 'resumable'"
    )
    assert [run.info.run_id for run in runs] == [first["mlflow_run_id"]]
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.params == {"lr": "0.1", "max_steps": "10"}
    assert runs[0].data.tags["param_changed.max_steps"] == "14"
    loss = [(m.step, m.value) for m in mlflow.get_metric_history(first["mlflow_run_id"], "loss")]
    # MLflow is append-only: the lost timeline's 8 and 10 stay, the replay resumes after 10.
    assert loss == [(2, 1.5), (4, 3.5), (6, 5.5), (8, 7.5), (10, 9.5), (12, 1011.5), (14, 1013.5)]
    count = [
        (m.step, m.value)
        for m in mlflow.get_metric_history(first["mlflow_run_id"], "episode/count")
    ]
    assert [step for step, _ in count] == [2, 4, 6, 8, 10, 12, 14]

    # TensorBoard purged the lost timeline from step 7 on and shows the replay instead.
    assert tensorboard_scalars(ctx.tensorboard_dir, "loss") == [
        (2, 1.5),
        (4, 3.5),
        (6, 5.5),
        (8, 1007.5),
        (10, 1009.5),
        (12, 1011.5),
        (14, 1013.5),
    ]
    record = json.loads(ctx.run_json.read_text())
    assert (record["starts"], record["status"], record["last_step"]) == (2, "FINISHED", 14)
