"""The sidecar's process killed with SIGKILL mid-run: Ray restarts it, it carries on from
run.json, and exactly the events that died with the old process are counted and reported."""

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import ray
import torch
from mlflow import MlflowClient

import trieye
from trieye import MetricSpec, RunContext, TrieyeConfig

pytestmark = pytest.mark.usefixtures("ray_session")

# Batches leave the client only by size and the sinks are written only on saves and explicit
# flushes, so which events were written before the kill is known exactly.
CONFIG = TrieyeConfig(
    metrics=[
        MetricSpec(name="loss"),
        MetricSpec(name="loss/count", source="loss", aggregation="count"),
    ],
    flush_every_seconds=3600,
    client_batch_size=10,
    client_batch_seconds=3600,
)


def log_steps(client: trieye.TrieyeClient, steps: range) -> None:
    for step in steps:
        client.log("loss", float(step), step)


def test_a_killed_actor_restarts_and_counts_exactly_the_lost_events(tmp_path: Path) -> None:
    ctx = RunContext(root_dir=tmp_path, app_name="app", run_name="crashy")
    trieye.start_actor(ctx, CONFIG)
    client = trieye.connect(ctx)

    log_steps(client, range(1, 21))
    ray.get(client.save_checkpoint(20, {"w": torch.ones(2)}))
    client.flush()
    # Received by the actor but not written to any sink: these die with its process.
    log_steps(client, range(21, 31))
    client.deliver()
    lost = len(range(21, 31))
    # Still in the client's buffer at the kill: shipped later, to the restarted actor.
    log_steps(client, range(31, 36))
    before = client.run_info()
    assert (before["events"], before["restarts"], before["lost_events"]) == (30, 0, 0)
    os.kill(before["actor_pid"], signal.SIGKILL)  # a crash, unlike ray.kill

    log_steps(client, range(36, 51))  # the batches wait for the restart in Ray's queue
    saved = ray.get(client.save_checkpoint(50, {"w": torch.full((2,), 2.0)}))
    client.flush()

    actor: Any = ray.get_actor(ctx.actor_name, namespace=ctx.namespace)
    after = ray.get(actor.run_info.remote())
    assert after["actor_pid"] != before["actor_pid"]
    assert after["mlflow_run_id"] == before["mlflow_run_id"]
    assert (after["restarts"], after["lost_events"]) == (1, lost)
    assert after["events"] == 20 + len(range(31, 51))  # counters continue from the last write
    assert saved == ctx.checkpoint_dir / "ckpt_000000000050.pt"
    loaded = client.load_latest()
    assert loaded is not None
    assert (loaded.step, loaded.state["w"].tolist()) == (50, [2.0, 2.0])

    record = json.loads(ctx.run_json.read_text())
    assert (record["restarts"], record["lost_events"]) == (1, lost)
    assert (record["starts"], record["last_checkpoint_step"]) == (2, 50)
    assert record["mlflow_run_id"] == before["mlflow_run_id"]

    mlflow = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
    experiment = mlflow.get_experiment_by_name("app")
    assert experiment is not None
    [run] = mlflow.search_runs(
        [experiment.experiment_id], filter_string="attributes.run_name = 'crashy'"
    )
    assert run.info.run_id == before["mlflow_run_id"]
    histories = {
        key: [(m.step, m.value) for m in mlflow.get_metric_history(run.info.run_id, key)]
        for key in run.data.metrics
    }
    for key, history in histories.items():
        steps = [step for step, _ in history]
        assert steps == sorted(set(steps)), key
    # One window before the kill (1..20) and one after it (31..50); 21..30 are the lost ones.
    assert histories["loss"] == [(20, 10.5), (50, 40.5)]
    assert histories["loss/count"] == [(20, 20.0), (50, 20.0)]
    assert sum(count for _, count in histories["loss/count"]) + lost == 50
    assert histories["trieye/lost_events"] == [(50, float(lost))]
    assert histories["trieye/restarts"] == [(50, 1.0)]

    log = (ctx.log_dir / "trieye.log").read_text()
    assert "was restarted after its process died (restart 1)" in log
    assert f"lost {lost} events of client" in log

    client.close()
    client.shutdown_actor()


def test_an_actor_dead_for_good_is_one_clear_error_and_its_files_stay(tmp_path: Path) -> None:
    ctx = RunContext(root_dir=tmp_path, app_name="app", run_name="gone")
    trieye.start_actor(ctx, CONFIG, max_restarts=0)
    client = trieye.connect(ctx)
    saved = client.saved_path(client.save_checkpoint(1, {"w": torch.ones(3)}))
    pid = client.run_info()["actor_pid"]
    os.kill(pid, signal.SIGKILL)
    log_steps(client, range(1, 5))
    with pytest.raises(trieye.SidecarDiedError, match="died and will not be restarted"):
        client.flush()
    # Every later call says the same at once instead of hanging or raising Ray internals.
    with pytest.raises(trieye.SidecarDiedError):
        client.save_checkpoint(2, {"w": torch.ones(3)})
    assert saved.exists()
    loaded = trieye.read_checkpoint(ctx.checkpoint_dir)
    assert (loaded.path, loaded.state["w"].tolist()) == (saved, [1.0, 1.0, 1.0])
