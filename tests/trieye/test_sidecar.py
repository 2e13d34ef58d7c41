"""The sidecar end to end on a real Ray: events from the driver and from two actors that look
it up by name, read back from MLflow's sqlite store, TensorBoard files and `mlflow server`."""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
from mlflow import MlflowClient

import trieye
from trieye import MetricSpec, RunContext, TrieyeConfig

from .conftest import tensorboard_scalars, wait_until

pytestmark = pytest.mark.usefixtures("ray_session")

# A realistic application config: episodes report their facts as context of one event.
CONFIG = TrieyeConfig(
    metrics=[
        MetricSpec(name="episode/score_mean", source="episode_end", context_key="score"),
        MetricSpec(
            name="episode/score_max", source="episode_end", context_key="score", aggregation="max"
        ),
        MetricSpec(name="episode/length_mean", source="episode_end", context_key="length"),
        MetricSpec(name="episode/count", source="episode_end", aggregation="count"),
        MetricSpec(
            name="lr",
            aggregation="latest",
            targets=frozenset({"mlflow", "tensorboard", "console"}),
        ),
    ],
    flush_every_seconds=3600,  # only explicit flushes, so the windows are exact
)


@ray.remote(num_cpus=0)
class EpisodeWorker:
    """Stands in for a self-play worker: it finds the sidecar by name, not by handle."""

    def __init__(self, ctx: RunContext) -> None:
        self.client = trieye.connect(ctx)

    def play(self, episodes: list[tuple[int, float, int]]) -> None:
        for step, score, length in episodes:
            self.client.log_event(
                "episode_end", step, {"score": score, "length": length, "worker": "w"}
            )
        self.client.flush()


@dataclass
class FinishedRun:
    ctx: RunContext
    info: dict[str, Any]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, ray_session: None) -> FinishedRun:
    ctx = RunContext(root_dir=tmp_path_factory.mktemp("data"), app_name="app", run_name="multi")
    trieye.start_actor(ctx, CONFIG)
    client = trieye.connect(ctx)
    for step, loss in [(1, 1.0), (2, 2.0), (3, 3.0)]:
        client.log("loss/total", loss, step)
    client.log("lr", 0.01, 2)
    client.log("lr", 0.02, 3)
    client.flush()
    first = EpisodeWorker.remote(ctx)  # type: ignore[attr-defined]
    second = EpisodeWorker.remote(ctx)  # type: ignore[attr-defined]
    ray.get(first.play.remote([(5, 10.0, 3), (5, 20.0, 5)]))
    ray.get(second.play.remote([(6, 30.0, 2), (7, 50.0, 4), (8, 70.0, 6)]))
    client.log("loss/total", 4.0, 9)
    client.log("loss/total", math.nan, 9)
    client.flush()
    assert client.log_params({"lr": 0.01, "net": {"channels": 64}}) == []
    client.log_text('{"mean_score": 12.5}', "eval/step_9.json")
    info = client.run_info()
    client.set_status("FINISHED")
    client.shutdown_actor()
    return FinishedRun(ctx, info)


EXPECTED = {
    "loss/total": [(3, 2.0), (9, 4.0)],
    "lr": [(3, 0.02)],
    "episode/score_mean": [(5, 15.0), (8, 50.0)],
    "episode/score_max": [(5, 20.0), (8, 70.0)],
    "episode/length_mean": [(5, 4.0), (8, 4.0)],
    "episode/count": [(5, 2.0), (8, 3.0)],
}


def test_mlflow_history_has_the_exact_aggregates(finished_run: FinishedRun) -> None:
    ctx = finished_run.ctx
    mlflow = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
    experiment = mlflow.get_experiment_by_name("app")
    assert experiment is not None
    [run] = mlflow.search_runs([experiment.experiment_id])
    assert run.info.run_id == finished_run.info["mlflow_run_id"]
    assert run.info.run_name == "multi"
    assert run.info.status == "FINISHED"
    for key, expected in EXPECTED.items():
        history = sorted((m.step, m.value) for m in mlflow.get_metric_history(run.info.run_id, key))
        assert history == expected, key
    assert run.data.params == {"lr": "0.01", "net.channels": "64"}
    [artifact] = mlflow.list_artifacts(run.info.run_id, "eval")
    assert artifact.path == "eval/step_9.json"
    assert finished_run.info["events"] == 12
    assert finished_run.info["dropped_nonfinite"] == 1


def test_tensorboard_files_have_the_exact_aggregates(finished_run: FinishedRun) -> None:
    for key, expected in EXPECTED.items():
        scalars = tensorboard_scalars(finished_run.ctx.tensorboard_dir, key)
        assert [step for step, _ in scalars] == [step for step, _ in expected], key
        # TensorBoard stores float32.
        assert [value for _, value in scalars] == pytest.approx([v for _, v in expected]), key


def test_run_json_records_the_run(finished_run: FinishedRun) -> None:
    record = json.loads(finished_run.ctx.run_json.read_text())
    assert record["mlflow_run_id"] == finished_run.info["mlflow_run_id"]
    assert record["status"] == "FINISHED"
    assert record["starts"] == 1
    assert record["last_step"] == 9
    assert record["mlflow_last_logged_step"]["loss/total"] == 9
    assert (finished_run.ctx.log_dir / "trieye.log").is_file()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def mlflow_server(finished_run: FinishedRun) -> Iterator[str]:
    port = free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    server = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--backend-store-uri",
            finished_run.ctx.mlflow_tracking_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so its workers stop with it
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5):
                    break
            except OSError:  # refused, reset or timed out while the server starts
                assert server.poll() is None, "mlflow server exited during start-up"
                assert time.monotonic() < deadline, "mlflow server did not answer within 90 s"
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def get_json(url: str, **query: str) -> Any:
    with urllib.request.urlopen(f"{url}?{urllib.parse.urlencode(query)}", timeout=10) as response:
        return json.load(response)


def test_mlflow_server_serves_the_run(finished_run: FinishedRun, mlflow_server: str) -> None:
    run_id = finished_run.info["mlflow_run_id"]
    run = get_json(f"{mlflow_server}/api/2.0/mlflow/runs/get", run_id=run_id)["run"]
    assert run["info"]["run_name"] == "multi"
    assert run["info"]["status"] == "FINISHED"
    history = get_json(
        f"{mlflow_server}/api/2.0/mlflow/metrics/get-history",
        run_id=run_id,
        metric_key="episode/score_mean",
    )["metrics"]
    assert sorted((m["step"], m["value"]) for m in history) == [(5, 15.0), (8, 50.0)]


def test_time_and_step_cadence_flush_without_explicit_flush(root: Path) -> None:
    ctx = RunContext(root_dir=root, app_name="app", run_name="cadence")
    config = TrieyeConfig(flush_every_seconds=0.3, client_batch_seconds=0.1)
    trieye.start_actor(ctx, config)
    client = trieye.connect(ctx)
    client.log("throughput", 5.0, 1)
    time.sleep(0.2)  # the batch's age is what ships it: this waits for the clock under test
    client.log("throughput", 7.0, 2)  # the batch is older than 0.1 s: ships now
    mlflow = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
    wait_until(
        lambda: (
            ctx.run_json.exists()
            and mlflow.get_metric_history(client.run_info()["mlflow_run_id"], "throughput")
        ),
        "flush by the writer thread",
    )
    [point] = mlflow.get_metric_history(client.run_info()["mlflow_run_id"], "throughput")
    assert (point.step, point.value) == (2, 6.0)
    client.shutdown_actor()


def test_step_cadence_flushes_when_the_step_advances(root: Path) -> None:
    ctx = RunContext(root_dir=root, app_name="app", run_name="steps")
    config = TrieyeConfig(flush_every_seconds=None, flush_every_steps=10, client_batch_size=1)
    trieye.start_actor(ctx, config)
    client = trieye.connect(ctx)
    client.log("x", 1.0, 1)
    client.log("x", 3.0, 5)
    # The actor holds steps 1 and 5, 6 steps since the start: no flush is due. Had one been,
    # MLflow would hold a point at step 1 or 5 and the one at step 11 would not be their mean.
    client.deliver()
    client.log("x", 5.0, 11)
    mlflow = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
    # The MLflow run is created, run.json written, then the points.
    wait_until(ctx.run_json.exists, "run.json from the step cadence's flush")
    run_id = client.run_info()["mlflow_run_id"]
    wait_until(lambda: mlflow.get_metric_history(run_id, "x"), "point of the flush in MLflow")
    history = mlflow.get_metric_history(run_id, "x")
    [point] = history
    assert (point.step, point.value) == (11, 3.0)
    client.shutdown_actor()


def test_a_restarted_actor_reattaches_to_its_run(root: Path) -> None:
    ctx = RunContext(root_dir=root, app_name="app", run_name="restarted")
    actor = trieye.start_actor(ctx, TrieyeConfig())
    client = trieye.connect(ctx)
    client.log("x", 1.0, 1)
    client.flush()
    before = client.run_info()
    run_id = before["mlflow_run_id"]
    ray.kill(actor, no_restart=False)  # Ray reruns the constructor, which reads run.json
    # Events that reach a dying actor die with its memory; wait for the new process.
    wait_until(lambda: client.run_info()["actor_pid"] != before["actor_pid"], "restarted actor")
    client.log("x", 2.0, 1)  # a step MLflow already has: skipped, not repeated
    client.flush()
    client.log("x", 3.0, 2)
    client.flush()
    info = client.run_info()
    assert (info["mlflow_run_id"], info["starts"], info["resumed"]) == (run_id, 2, True)
    assert info["mlflow_points_skipped"] == 1
    mlflow = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
    assert [(m.step, m.value) for m in mlflow.get_metric_history(run_id, "x")] == [
        (1, 1.0),
        (2, 3.0),
    ]
    client.shutdown_actor()


def test_load_latest_skips_a_truncated_checkpoint(root: Path) -> None:
    ctx = RunContext(root_dir=root, app_name="app", run_name="corrupt")
    trieye.start_actor(ctx, TrieyeConfig())
    client = trieye.connect(ctx)
    import torch

    for step in (10, 20):
        ref = client.save_checkpoint(
            step,
            {"weights": torch.full((4,), float(step)), "counters": {"episodes": step}},
            buffer={"obs": np.full((2, 2), step, dtype=np.float32)},
        )
        assert ray.get(ref) == ctx.checkpoint_dir / f"ckpt_{step:012d}.pt"
    newest = ctx.checkpoint_dir / "ckpt_000000000020.pt"
    with open(newest, "r+b") as handle:
        handle.truncate(100)
    loaded = client.load_latest()
    assert loaded is not None
    assert loaded.step == 10
    assert loaded.state["counters"] == {"episodes": 10}
    assert torch.equal(loaded.state["weights"], torch.full((4,), 10.0))
    assert loaded.buffer is not None
    assert loaded.buffer["obs"][0, 0] == 10.0
    [warning] = loaded.warnings
    assert str(newest) in warning
    assert "truncated" in warning
    assert client.run_info()["resumed_from_step"] == 10
    client.shutdown_actor()


def test_connect_without_actor_says_what_to_do(tmp_path: Path) -> None:
    ctx = RunContext(root_dir=tmp_path, app_name="app", run_name="nobody")
    with pytest.raises(trieye.SidecarNotFoundError, match="start_actor"):
        trieye.connect(ctx)


def test_a_failed_save_raises_from_its_ref_and_is_listed_once(root: Path) -> None:
    ctx = RunContext(root_dir=root, app_name="app", run_name="failsave")
    trieye.start_actor(ctx, TrieyeConfig())
    client = trieye.connect(ctx)
    ctx.checkpoint_dir.parent.mkdir(parents=True)
    ctx.checkpoint_dir.write_text("a file where the checkpoint directory should be")
    ref = client.save_checkpoint(1, {"x": 1})
    with pytest.raises(ray.exceptions.RayTaskError, match="checkpoints"):
        ray.get(ref)
    # A failed save does not fail the next one; the caller learns of it from failed_saves().
    second = client.save_checkpoint(2, {"x": 2})
    with pytest.raises(ray.exceptions.RayTaskError):
        ray.get(second)
    failures = client.failed_saves()
    assert [f.step for f in failures] == [1, 2]
    assert all(isinstance(f.error, OSError) for f in failures), failures
    assert client.failed_saves() == []
    ctx.checkpoint_dir.unlink()
    assert client.saved_path(client.save_checkpoint(3, {"x": 3})).name == "ckpt_000000000003.pt"
    client.shutdown_actor()


def test_a_failed_save_names_the_save_after_it_and_is_reported_once(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = RunContext(root_dir=root, app_name="app", run_name="nextsave")
    trieye.start_actor(ctx, TrieyeConfig())
    client = trieye.connect(ctx)
    ctx.checkpoint_dir.parent.mkdir(parents=True)
    ctx.checkpoint_dir.write_text("a file where the checkpoint directory should be")
    first = client.save_checkpoint(1, {"x": 1})
    client.save_checkpoint(2, {"x": 2})
    with pytest.raises(ray.exceptions.RayTaskError, match="checkpoints"):
        client.saved_path(first)  # seen by the caller here: not listed again
    last = client.save_checkpoint(3, {"x": 3})
    ray.wait([last])  # saves run in order: every one before it has finished too
    failures = client.failed_saves()
    assert [(f.step, f.next_step) for f in failures] == [(2, 3), (3, None)]
    client.shutdown_actor()
    assert "checkpoint save of step" not in caplog.text


def test_a_client_waits_for_its_oldest_save_rather_than_pile_saves_up(root: Path) -> None:
    ctx = RunContext(root_dir=root, app_name="app", run_name="pending")
    trieye.start_actor(ctx, TrieyeConfig(client_max_pending_saves=1))
    client = trieye.connect(ctx)
    buffer = {"obs": np.ones((1_000_000, 8), dtype=np.float32)}  # 32 MB: a write takes a while
    first = client.save_checkpoint(1, {"x": 1}, buffer=buffer)
    second = client.save_checkpoint(2, {"x": 2}, buffer=buffer)
    # The second call returned only once the first save was written.
    assert ray.wait([first], timeout=0)[0] == [first]
    assert client.saved_path(first) == ctx.checkpoint_dir / "ckpt_000000000001.pt"
    assert client.saved_path(second) == ctx.checkpoint_dir / "ckpt_000000000002.pt"
    client.shutdown_actor()
