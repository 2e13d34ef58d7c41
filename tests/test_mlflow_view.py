"""What a user finds in MLflow, read back with ``MlflowClient`` from the real CLI's store: the
experiment's kind, how a run ended (Ctrl-C, resumed, finished), where it came from, and each
``alphatriangle eval`` as a run of its own."""

from __future__ import annotations

import getpass
import json
import re
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from alphatriangle.app.runs import app_context, run_context
from tests.cli import ok, run_cli, seed_tracking_store, start_cli, train_args
from tests.conftest import TINY
from trieye import RunContext

NAME = "view"
MODEL_TRAINING = "custom_model_development"
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Stopped:
    """A run that Ctrl-C stopped: its work directory, what ``train`` printed, its last step."""

    workdir: Path
    out: str
    step: int

    @property
    def ctx(self) -> RunContext:
        return run_context(NAME, self.workdir / "data")

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.ctx.mlflow_tracking_uri)

    def run_id(self) -> str:
        return str(json.loads(self.ctx.run_json.read_text())["mlflow_run_id"])


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory, tracking_store: Path) -> Stopped:
    """Run ``NAME`` stopped by SIGINT after its first gradient step, in a store whose
    experiment an earlier MLflow UI had switched to the GenAI view."""
    workdir = tmp_path_factory.mktemp("view")
    (workdir / "tiny.toml").write_text(TINY)
    seed_tracking_store(workdir, tracking_store)
    app = app_context(workdir / "data")
    MlflowClient(tracking_uri=app.mlflow_tracking_uri).create_experiment(
        app.experiment_name,
        artifact_location=app.artifact_root.as_uri(),
        tags={"mlflow.experimentKind": "genai_development"},
    )
    proc = start_cli(workdir, *train_args("--run-name", NAME))
    proc.wait_output("first gradient step")
    proc.send_signal(signal.SIGINT)
    out = proc.finish(timeout=120)
    assert proc.returncode == 0, out
    final = re.search(rf"stopped '{NAME}' at step (\d+)", out)
    assert final, out
    return Stopped(workdir, out, int(final.group(1)))


def test_a_ctrl_c_run_is_finished_in_mlflow_stopped_in_runs_and_says_why(
    stopped: Stopped,
) -> None:
    record = json.loads(stopped.ctx.run_json.read_text())
    run = stopped.client().get_run(stopped.run_id())
    assert (run.info.status, record["status"]) == ("FINISHED", "STOPPED")
    assert run.info.end_time is not None
    assert run.data.tags["trieye.end_reason"] == record["end_reason"] == "stopped by SIGINT"
    assert record["last_checkpoint_step"] == stopped.step
    listing = ok(run_cli(stopped.workdir, "runs"))
    assert re.search(rf"{NAME} +│ STOPPED +│ {stopped.step} ", listing), listing


def test_the_experiment_opens_as_model_training_in_a_new_store_and_an_existing_one(
    stopped: Stopped, trained_run: Path
) -> None:
    # trained_run is the first run of an empty data root: its train created the store.
    for root in (trained_run / "data", stopped.workdir / "data"):
        app = app_context(root)
        experiment = MlflowClient(app.mlflow_tracking_uri).get_experiment_by_name(
            app.experiment_name
        )
        assert experiment is not None
        assert experiment.tags["mlflow.experimentKind"] == MODEL_TRAINING
    # MLflow 3.17's UI follows the address's workflowType, not the tag: train prints one.
    run = stopped.client().get_run(stopped.run_id())
    url = (
        f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
        "?workflowType=machine_learning"
    )
    assert f"then open {url}" in stopped.out


def _code_version() -> tuple[str | None, str]:
    """What the tags should say of the code the tests run: the checkout's commit, or the
    package's version when the tests run from a copy without git."""
    found = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True)
    if found.returncode != 0:
        return None, f"alphatriangle {version('alphatriangle')}"
    commit = found.stdout.decode().strip()
    return commit, f"git {commit}"


def test_the_run_says_which_command_code_and_user_made_it_and_what_it_trains(
    stopped: Stopped,
) -> None:
    run = stopped.client().get_run(stopped.run_id())
    tags = run.data.tags
    assert tags["mlflow.source.name"] == "alphatriangle train"
    assert tags["mlflow.source.type"] == "LOCAL"
    assert tags["alphatriangle.command"] == (
        f"alphatriangle train --config tiny.toml --workers 1 --run-name {NAME}"
    )
    assert tags["mlflow.user"] == getpass.getuser()
    commit, code_version = _code_version()
    assert tags.get("mlflow.source.git.commit") == commit
    assert tags["alphatriangle.code_version"] in (code_version, f"{code_version} (modified)")
    assert tags["mlflow.note.content"] == (
        "AlphaZero; gumbel search, 8 simulations (16 considered); network 32 channels, "
        "1 residual block; batch 16, lr 0.001 (cosine), replay ratio 8, buffer 100000; "
        "50000 steps, 1 worker, seed 0"
    )
    # The whole config: as params, and as the artifact config.json.
    assert (run.data.params["mcts.simulations"], run.data.params["train.batch_size"]) == ("8", "16")
    assert "config.json" in {a.path for a in stopped.client().list_artifacts(stopped.run_id())}


def test_two_evaluations_of_one_checkpoint_are_two_runs_nested_under_the_run(
    stopped: Stopped,
) -> None:
    for sims in (4, 8):
        args = ["--seeds", "0:2", "--sims", str(sims), "--baseline-sims", "4"]
        out = ok(run_cli(stopped.workdir, "eval", "--run-name", NAME, *args))
        name = f"eval step {stopped.step}, gumbel {sims} sims, seeds 0:2"
        assert f"logged to MLflow as the run '{name}', nested under '{NAME}'" in out
    client, parent = stopped.client(), stopped.run_id()
    experiment_id = client.get_run(parent).info.experiment_id
    nested = client.search_runs(
        [experiment_id], f"tags.mlflow.parentRunId = '{parent}'", order_by=["params.simulations"]
    )
    assert [r.info.run_name for r in nested] == [
        f"eval step {stopped.step}, gumbel {sims} sims, seeds 0:2" for sims in (4, 8)
    ]
    players = ["network", "uniform-mcts-4", "greedy", "random"]
    for run, sims in zip(nested, (4, 8), strict=True):
        report = json.loads((stopped.ctx.eval_dir / run.data.params["report"]).read_text())
        assert run.data.params == {
            "checkpoint": f"ckpt_{stopped.step:012d}.pt",
            "step": str(stopped.step),
            "seeds": "0:2",
            "games": "2",
            "search": "gumbel",
            "simulations": str(sims),
            "baseline_simulations": "4",
            "players": ",".join(players),
            "report": f"eval_step{stopped.step:09d}_seeds0-1_sims{sims}.json",
        }
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.source.name"] == "alphatriangle eval"
        [point] = client.get_metric_history(run.info.run_id, "eval_cli/network/mean")
        assert point.step == stopped.step
        assert point.value == pytest.approx(report["players"]["network"]["mean"])
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"eval_table.json", "evals"} <= artifacts
        table_file = client.download_artifacts(run.info.run_id, "eval_table.json")
        table = json.loads(Path(table_file).read_text())
        assert table["columns"][:3] == ["player", "games", "mean"]
        assert [row[:2] for row in table["data"]] == [[player, 2] for player in players]
    # The run's own charts keep only what training logged.
    assert not [key for key in client.get_run(parent).data.metrics if key.startswith("eval_cli")]


def test_resuming_puts_the_run_back_to_running_and_reaching_max_steps_finishes_it(
    stopped: Stopped, workdir: Path
) -> None:
    shutil.rmtree(workdir / "data")
    shutil.copytree(stopped.workdir / "data", workdir / "data")
    ctx = run_context(NAME, workdir / "data")
    client = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
    run_id = json.loads(ctx.run_json.read_text())["mlflow_run_id"]
    target = stopped.step + 6
    proc = start_cli(workdir, *train_args("--run-name", NAME, "--max-steps", str(target)))
    proc.wait_output("first gradient step")
    record = json.loads(ctx.run_json.read_text())
    run = client.get_run(run_id)
    assert (run.info.status, record["status"], record["end_reason"]) == ("RUNNING", "RUNNING", None)
    assert "trieye.end_reason" not in run.data.tags
    # (`runs` is not asked here: its start takes longer than the few steps left to train;
    # test_cli_output checks what it shows of a live trainer.)
    out = proc.finish(timeout=240)
    assert proc.returncode == 0, out
    record = json.loads(ctx.run_json.read_text())
    run = client.get_run(run_id)
    assert (run.info.status, record["status"]) == ("FINISHED", "FINISHED")
    assert run.data.tags["trieye.end_reason"] == "finished (max steps reached)"
    # Where it came from is that of its latest start.
    assert run.data.tags["alphatriangle.command"] == (
        f"alphatriangle train --config tiny.toml --workers 1 --run-name {NAME} --max-steps {target}"
    )
    assert re.search(rf"{NAME} +│ FINISHED +│ {target} ", ok(run_cli(workdir, "runs")))


def test_ml_prints_the_address_of_the_experiment_in_the_model_training_view(
    stopped: Stopped,
) -> None:
    # A port already taken: MLflow's server says so and ends, after `ml` printed the address.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_cli(stopped.workdir, "ml", "--port", str(port), timeout=120).stdout
    experiment_id = stopped.client().get_run(stopped.run_id()).info.experiment_id
    address = f"http://127.0.0.1:{port}/#/experiments/{experiment_id}"
    assert out.splitlines()[0] == (
        f"open {address}?workflowType=machine_learning (MLflow's Model training view)"
    )
