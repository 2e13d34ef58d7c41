"""The real ``alphatriangle eval`` and ``play`` on a checkpoint made by a real tiny training run."""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image, ImageSequence

from alphatriangle.app.reports import load_network
from alphatriangle.app.runs import run_context
from alphatriangle.core.algorithm import agent_player
from alphatriangle.core.players import PolicyPlayer, play_games
from tests.cli import (
    Background,
    cli_env,
    manifest_steps,
    ok,
    run_cli,
    seed_tracking_store,
    start_cli,
    tiny_config,
    train_args,
    wait_for,
)
from tests.files import code_running_pickle, forge_checkpoint, read_only

TINY = {
    # Self-play's count grows 8 -> 12 over the 4 steps trained: eval and play default to 12
    # (the player's count, 1 in tiny_config, never searches less than self-play).
    "mcts": {"simulations_final": 12, "simulations_ramp_steps": 4},
    "train": {"checkpoint_every_steps": 4, "weights_publish_every_steps": 2},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tracking_store: Path) -> Path:
    # Its own run, not a copy of ``trained_run``: eval logs MLflow artifacts, which MLflow
    # keeps under the absolute path of the store that created the run.
    workdir = tmp_path_factory.mktemp("evalrun")
    (workdir / "tiny.toml").write_text(tiny_config(**TINY))
    seed_tracking_store(workdir, tracking_store)
    ok(run_cli(workdir, *train_args("--run-name", "ev", "--max-steps", "4")))
    return workdir


def test_eval_writes_table_and_json_with_the_right_seeds(trained: Path) -> None:
    result = run_cli(
        trained, "eval", "--run-name", "ev", "--seeds", "5:8", "--sims", "4", "--baseline-sims", "4"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for player in ("network", "uniform-mcts-4", "greedy", "random"):
        assert player in result.stdout
    ctx = run_context("ev", trained / "data")
    [path] = ctx.eval_dir.glob("*.json")
    report = json.loads(path.read_text())
    assert report["seeds"] == [5, 6, 7]
    assert report["step"] == 4
    assert set(report["players"]) == {"network", "uniform-mcts-4", "greedy", "random"}
    for summary in report["players"].values():
        assert summary["games"] == 3
        assert len(summary["scores"]) == len(summary["lengths"]) == 3
        assert summary["mean"] == pytest.approx(sum(summary["scores"]) / 3)
    parent = json.loads(ctx.run_json.read_text())["mlflow_run_id"]
    client = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
    experiment_id = client.get_run(parent).info.experiment_id
    [run] = client.search_runs(
        [experiment_id], f"tags.mlflow.parentRunId = '{parent}' and params.seeds = '5:8'"
    )
    run_id = run.info.run_id
    [point] = client.get_metric_history(run_id, "eval_cli/network/mean")
    assert point.step == 4
    assert point.value == pytest.approx(report["players"]["network"]["mean"])
    artifacts = [a.path for a in client.list_artifacts(run_id, "evals")]
    assert f"evals/{path.name}" in artifacts


def test_eval_is_deterministic(trained: Path) -> None:
    ctx = run_context("ev", trained / "data")
    reports = []
    for _ in range(2):
        args = ["eval", "--run-name", "ev", "--seeds", "20:21", "--sims", "8", "--no-baselines"]
        result = run_cli(trained, *args)
        assert result.returncode == 0, result.stdout + result.stderr
        [path] = ctx.eval_dir.glob("*seeds20-20*.json")
        reports.append(json.loads(path.read_text())["players"])
    assert reports[0] == reports[1]


def test_play_writes_a_gif_with_one_frame_per_move_plus_the_start(trained: Path) -> None:
    out = trained / "game.gif"
    args = ["play", "--run-name", "ev", "--seed", "3", "--sims", "4", "--out", str(out)]
    result = run_cli(trained, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    moves = int(re.search(r"game over: score [\d.]+ in (\d+) moves", result.stdout).group(1))  # type: ignore[union-attr]
    assert "▲" in result.stdout or "△" in result.stdout
    with Image.open(out) as gif:
        assert sum(1 for _ in ImageSequence.Iterator(gif)) == moves + 1


@pytest.mark.parametrize("where", ["read-only", "under-a-file", "too-long", "markup"])
def test_play_refuses_an_out_it_cannot_write_before_playing(
    trained: Path, tmp_path: Path, where: str
) -> None:
    (tmp_path / "afile").write_text("a file\n")
    (tmp_path / "locked").mkdir()
    out, message = {
        "read-only": (tmp_path / "locked" / "game.gif", f"cannot write in {tmp_path / 'locked'}"),
        "under-a-file": (tmp_path / "afile" / "game.gif", f"{tmp_path / 'afile'} is not a dir"),
        "too-long": (tmp_path / ("g" * 300 + ".txt"), "File name too long"),
        "markup": (tmp_path / "afile" / "[/x].png", "afile is not a directory"),
    }[where]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    args = ["play", "--run-name", "ev", "--sims", "4", "--out", str(out)]
    if where == "read-only":
        with read_only(tmp_path / "locked"):
            result = run_cli(trained, *args)
    else:
        result = run_cli(trained, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.strip()]
    assert line.startswith("error: --out: "), line
    assert message in line, line
    assert len(line) < 600
    assert result.stderr == ""
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    ("command", "started"),
    [
        (["play", "--run-name", "ev", "--delay", "1", "--out", "stopped.gif"], "move 1:"),
        (["eval", "--run-name", "ev", "--games", "1000", "--sims", "64"], "evaluating"),
    ],
    ids=["play", "eval"],
)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_eval_and_play_at_once_with_one_line(
    trained: Path, command: list[str], started: str, sig: signal.Signals
) -> None:
    ctx = run_context("ev", trained / "data")
    reports = sorted(ctx.eval_dir.glob("*.json"))
    proc = start_cli(trained, *command)
    proc.wait_output(started)
    proc.send_signal(sig)
    out = proc.finish()
    assert proc.returncode == 130, out
    assert out.rstrip().splitlines()[-1] == f"{sig.name}: stopped before finishing"
    assert "Traceback" not in out
    assert not (trained / "stopped.gif").exists()
    assert sorted(ctx.eval_dir.glob("*.json")) == reports


def _eval_with_its_pool(trained: Path) -> tuple[Background, list[psutil.Process]]:
    """A long eval in two processes, once both are playing; its pool's processes."""
    args = ["--games", "1000", "--sims", "64", "--jobs", "2"]
    proc = start_cli(trained, "eval", "--run-name", "ev", *args)
    proc.wait_output("evaluating")
    cli = psutil.Process(proc.proc.pid)
    wait_for(lambda: len(cli.children()) == 2, proc)
    return proc, cli.children()


def _gone(pool: list[psutil.Process]) -> bool:
    _, alive = psutil.wait_procs(pool, timeout=30)
    return [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []


def test_a_second_signal_ends_evals_processes_with_it(trained: Path) -> None:
    proc, pool = _eval_with_its_pool(trained)
    # Back to back: the first stops the evaluation, the second quits at once.
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGINT)
    out = proc.finish()
    assert proc.returncode == 130, out
    assert "again: quitting at once" in out or out.rstrip().endswith("stopped before finishing")
    assert "Traceback" not in out
    assert _gone(pool)


def test_evals_processes_end_when_it_is_killed(trained: Path) -> None:
    """``kill -9`` of eval leaves no process of its pool behind, playing or waiting for work."""
    proc, pool = _eval_with_its_pool(trained)
    proc.proc.kill()
    proc.proc.wait()
    assert _gone(pool)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "no/such.pt"], "does not exist"),
        (["--checkpoint", "/etc/passwd"], "is not a checkpoint file of this run"),
        (["--seeds", "9:3"], "--seeds"),
        (["--checkpoint", "best"], "no best checkpoint"),
        (["--checkpoint", "c" * 5000], "File name too long"),
        (["--seeds", "1:" + "9" * 100_000], "--seeds '1:999"),
        (["--seeds", "0:10000000000"], "10000000000 games; play at most 1000000"),
        (["--games", "10000000000"], "--games 10000000000: 10000000000 games; play at most"),
    ],
    ids=[
        "missing",
        "not-of-the-run",
        "bad-seeds",
        "no-best",
        "long-name",
        "100000-digit-seeds",
        "10-billion-seeds",
        "10-billion-games",
    ],
)
def test_eval_bad_input_is_one_clear_line(trained: Path, args: list[str], message: str) -> None:
    before = sorted(p.name for p in (trained / "data").rglob("*"))
    result = run_cli(trained, "eval", "--run-name", "ev", *args)
    assert result.returncode == 2
    [line] = [line for line in result.stdout.splitlines() if line.strip()]
    assert message in line
    assert len(line) < 600
    assert "Traceback" not in result.stdout + result.stderr
    assert sorted(p.name for p in (trained / "data").rglob("*")) == before


def test_eval_skips_a_newest_file_that_is_no_checkpoint_and_refuses_it_when_named(
    trained: Path, tmp_path: Path
) -> None:
    work = tmp_path / "copy"
    shutil.copytree(trained, work)
    ctx = run_context("ev", work / "data")
    newest = manifest_steps(ctx.checkpoint_dir)[-1]
    marker = tmp_path / "code-ran"
    forged = forge_checkpoint(ctx.checkpoint_dir, newest + 1, code_running_pickle(marker))
    result = run_cli(work, "eval", "--run-name", "ev", "--games", "1", "--no-baselines")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"warning: checkpoint {forged} is unusable (cannot be loaded" in result.stdout
    assert f"(step {newest})" in result.stdout
    named = run_cli(work, "eval", "--run-name", "ev", "--checkpoint", str(forged))
    assert named.returncode == 2
    [line] = [line for line in named.stdout.splitlines() if line.strip()]
    assert line.startswith(f"error: --checkpoint {forged}: no usable checkpoint")
    assert "Traceback" not in named.stdout + named.stderr
    assert not marker.exists()


def test_eval_and_play_search_with_the_players_count_at_the_checkpoints_step(
    trained: Path, tmp_path: Path
) -> None:
    work = tmp_path / "copy"
    shutil.copytree(trained, work)
    result = run_cli(work, "eval", "--run-name", "ev", "--seeds", "7:8", "--no-baselines")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(step 4) on 1 seeds 7..7, gumbel search, 12 simulations" in result.stdout
    [path] = run_context("ev", work / "data").eval_dir.glob("*seeds7-7*.json")
    assert json.loads(path.read_text())["simulations"] == 12
    played = run_cli(work, "play", "--run-name", "ev", "--seed", "7")
    assert played.returncode == 0, played.stdout + played.stderr
    assert "ev step 4, seed 7, gumbel search, 12 simulations" in played.stdout
    # A player count above self-play's is the default of eval and play.
    config = run_context("ev", work / "data").config_json
    settings = json.loads(config.read_text())
    settings["mcts"]["play_simulations"] = 14
    config.write_text(json.dumps(settings))
    result = run_cli(work, "eval", "--run-name", "ev", "--seeds", "8:9", "--no-baselines")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(step 4) on 1 seeds 8..8, gumbel search, 14 simulations" in result.stdout
    played = run_cli(work, "play", "--run-name", "ev", "--seed", "7")
    assert played.returncode == 0, played.stdout + played.stderr
    assert "ev step 4, seed 7, gumbel search, 14 simulations" in played.stdout


def test_eval_shares_its_games_between_processes_with_the_same_results(
    trained: Path, tmp_path: Path
) -> None:
    work = tmp_path / "copy"
    shutil.copytree(trained, work)
    args = ["eval", "--run-name", "ev", "--seeds", "3:6", "--sims", "4", "--baseline-sims", "4"]
    players = {}
    for jobs in ("1", "3"):
        result = run_cli(work, *args, "--jobs", jobs)
        assert result.returncode == 0, result.stdout + result.stderr
        [path] = run_context("ev", work / "data").eval_dir.glob("*seeds3-5*.json")
        players[jobs] = json.loads(path.read_text())["players"]
    assert players["3"] == players["1"]
    assert list(players["1"]) == ["network", "uniform-mcts-4", "greedy", "random"]


def test_eval_of_a_missing_run_is_refused(trained: Path) -> None:
    result = run_cli(trained, "eval", "--run-name", "nope")
    assert result.returncode == 2
    assert "does not exist" in result.stdout


def test_periodic_evaluation_logs_eval_metrics_and_keeps_the_best_checkpoint(
    workdir: Path,
) -> None:
    (workdir / "tiny.toml").write_text(
        tiny_config(**TINY, eval={"every_steps": 3, "games": 2, "simulations": 4})
    )
    ok(run_cli(workdir, *train_args("--run-name", "pe", "--max-steps", "15")))
    ctx = run_context("pe", workdir / "data")
    run_id = json.loads(ctx.run_json.read_text())["mlflow_run_id"]
    client = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
    history = client.get_metric_history(run_id, "eval/score_mean")
    assert history, "no evaluation finished during the run"
    assert all(point.step % 3 == 0 for point in history)
    # The evaluation actor's own CPU and memory, once per evaluation, at the same steps.
    for name in ("system/eval/cpu_percent", "system/eval/rss_mb"):
        system = client.get_metric_history(run_id, name)
        assert {p.step for p in system} == {p.step for p in history}, name
    assert all(
        50 < p.value < 10_000 for p in client.get_metric_history(run_id, "system/eval/rss_mb")
    )
    best = [
        json.loads(p.read_text())
        for p in ctx.checkpoint_dir.glob("*.json")
        if json.loads(p.read_text()).get("is_best")
    ]
    assert len(best) == 1
    best_step = best[0]["step"]
    # The first evaluation to reach the top score is the one kept as best.
    by_step = sorted(history, key=lambda p: p.step)
    assert max(by_step, key=lambda p: p.value).step == best_step

    result = run_cli(
        workdir,
        "eval",
        "--run-name",
        "pe",
        "--checkpoint",
        "best",
        "--games",
        "2",
        "--no-baselines",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"(step {best_step})" in result.stdout


def test_the_search_headroom_bench_plays_one_checkpoint_at_several_simulation_counts(
    trained: Path, tmp_path: Path
) -> None:
    script = Path(__file__).parents[1] / "bench" / "search_headroom.py"
    args = [sys.executable, str(script), "--run-name", "ev", "--data-dir", str(trained / "data")]
    out = tmp_path / "headroom.json"
    common = ["--seeds", "3:6", "--jobs", "2", "--json", str(out)]
    done = subprocess.run(
        [*args, "--sims", "2,4", *common], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {row["simulations"]: row for row in json.loads(out.read_text())["rows"]}
    assert sorted(rows) == [0, 2, 4]  # 0: the policy alone
    # Each row is the checkpoint's own search (or its policy alone) on the same seeds.
    model, cfg, _ = load_network(run_context("ev", trained / "data"), "latest", warn=print)
    for sims, row in rows.items():
        player = (
            PolicyPlayer(model)
            if sims == 0
            else agent_player(model, cfg, cfg.mcts.model_copy(update={"simulations": sims}))
        )
        assert row["scores"] == [r.score for r in play_games(player, [3, 4, 5])]
        assert row["mean"] == pytest.approx(statistics.fmean(row["scores"]))
        assert row["se"] == pytest.approx(statistics.stdev(row["scores"]) / math.sqrt(3))
        diffs = [a - b for a, b in zip(row["scores"], rows[2]["scores"], strict=True)]
        assert row["paired_difference"] == pytest.approx(statistics.fmean(diffs))
    assert rows[2]["paired_difference"] == 0.0
    refused = subprocess.run([*args, "--sims", "4,x", *common], capture_output=True, text=True)
    assert refused.returncode == 2
    assert "--sims '4,x': expected positive integers separated by commas" in refused.stderr


def test_the_diagnosis_bench_plays_each_chosen_checkpoint_with_search_and_policy_alone(
    trained: Path, tmp_path: Path
) -> None:
    script = Path(__file__).parents[1] / "bench" / "diagnosis.py"
    out = tmp_path / "diagnosis"
    args = [sys.executable, str(script), "--run-name", "ev", "--data-dir", str(trained / "data")]
    common = ["--seeds", "3:6", "--jobs", "2", "--out", str(out)]
    done = subprocess.run([*args, "--at", "0,1000", *common], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "diagnosis.json").read_text())
    run = run_context("ev", trained / "data")
    steps = sorted(manifest_steps(run.checkpoint_dir))
    # Minute 0 is nearest the first checkpoint, minute 1000 the newest (each played once).
    assert [row["step"] for row in report["rows"]] == sorted({steps[0], steps[-1]})
    for row in report["rows"]:
        model, cfg, _ = load_network(run, row["checkpoint"], warn=print)
        assert row["simulations"] == cfg.mcts.play_simulations_at(row["step"])
        own = cfg.mcts.model_copy(update={"simulations": row["simulations"]})
        searched = play_games(agent_player(model, cfg, own), [3, 4, 5])
        assert row["search_scores"] == [r.score for r in searched]
        assert row["policy_scores"] == [r.score for r in play_games(PolicyPlayer(model), [3, 4, 5])]
        assert row["search_mean"] == pytest.approx(statistics.fmean(row["search_scores"]))
        assert row["search_se"] == pytest.approx(
            statistics.stdev(row["search_scores"]) / math.sqrt(3)
        )
    # The run's diagnostics, read back from its MLflow store, travel with the curve.
    assert report["series"]["learn/sample_age"]
    assert (out / "diagnosis.png").stat().st_size > 0
    refused = subprocess.run([*args, "--at", "x", *common], capture_output=True, text=True)
    assert refused.returncode == 2
    assert "--at or --seeds" in refused.stderr
    # --sims: every checkpoint searches with that count instead.
    done = subprocess.run(
        [*args, "--at", "1000", "--sims", "4", *common], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [row] = json.loads((out / "diagnosis.json").read_text())["rows"]
    model, cfg, _ = load_network(run, row["checkpoint"], warn=print)
    four = agent_player(model, cfg, cfg.mcts.model_copy(update={"simulations": 4}))
    assert (row["step"], row["simulations"]) == (steps[-1], 4)
    assert row["search_scores"] == [r.score for r in play_games(four, [3, 4, 5])]
    # A player count above self-play's is the default; --sims self-play takes self-play's.
    work = tmp_path / "copy"
    shutil.copytree(trained, work)
    config = run_context("ev", work / "data").config_json
    settings = json.loads(config.read_text())
    settings["mcts"]["play_simulations"] = 14
    config.write_text(json.dumps(settings))
    copied = [sys.executable, str(script), "--run-name", "ev", "--data-dir", str(work / "data")]
    for sims, expected in (([], 14), (["--sims", "self-play"], 12)):
        done = subprocess.run(
            [*copied, "--at", "1000", *sims, *common], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        [row] = json.loads((out / "diagnosis.json").read_text())["rows"]
        assert (row["step"], row["simulations"]) == (steps[-1], expected)
    refused = subprocess.run([*args, "--sims", "0", *common], capture_output=True, text=True)
    assert refused.returncode == 2
    assert "--sims '0': use a positive number of simulations or 'self-play'" in refused.stderr


def test_the_learning_pipeline_keeps_each_complete_checkpoint_it_sees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "bench"))
    from learning_pipeline import keep_snapshots

    source, dest = tmp_path / "checkpoints", tmp_path / "snapshots"
    source.mkdir()
    for step, size, written in ((4, 3, 3), (8, 5, 2), (12, 4, None)):
        name = f"ckpt_{step:012d}"
        (source / f"{name}.json").write_text(json.dumps({"file": f"{name}.pt", "size": size}))
        if written is not None:  # 8: still being written; 12: its file already pruned
            (source / f"{name}.pt").write_bytes(b"x" * written)
    done = threading.Event()
    done.set()  # one pass
    keep_snapshots(source, dest, done, every_s=0)
    assert sorted(p.name for p in dest.iterdir()) == [
        "ckpt_000000000004.json",
        "ckpt_000000000004.pt",
    ]


@pytest.mark.parametrize("where", ["config", "flag"])
def test_the_learning_pipeline_ends_at_max_steps_with_the_cosine_schedule(
    tmp_path: Path, where: str
) -> None:
    """The run's ``train.max_steps``, or ``--max-steps``, sets the length of its cosine
    learning rate, and a run that reaches it before ``--minutes`` is a finished benchmark,
    not a failure."""
    train = {"lr_warmup_steps": 0} | ({"max_steps": 6} if where == "config" else {})
    (tmp_path / "tiny.toml").write_text(tiny_config(train=train))
    script = Path(__file__).parents[1] / "bench" / "learning_pipeline.py"
    out = tmp_path / "out"
    args = [sys.executable, str(script), "--config", str(tmp_path / "tiny.toml")]
    args += ["--workers", "1", "--minutes", "10", "--no-baselines"]
    args += ["--max-steps", "6"] if where == "flag" else []
    args += ["--seeds", "1000:1002", "--out", str(out), "--keep-data"]
    done = subprocess.run(args, capture_output=True, text=True, env=cli_env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "learning_pipeline.json").read_text())
    assert (summary["steps"], summary["max_steps"]) == (6, 6)
    [kept] = re.findall(r"run data kept in (\S+)", done.stdout)
    try:
        run = run_context("learning-pipeline", Path(kept))
        config = json.loads(run.config_json.read_text())
        assert (config["train"]["max_steps"], config["train"]["lr_schedule"]) == (6, "cosine")
        # The checkpoint's optimizer holds the rate after the 6th step: the cosine's end, 10%.
        newest = max(run.checkpoint_dir.glob("ckpt_*.pt"))
        state = torch.load(newest, weights_only=True)
        assert state["counters"]["step"] == 6
        peak = config["train"]["learning_rate"]
        assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.1 * peak)
    finally:
        shutil.rmtree(kept)
