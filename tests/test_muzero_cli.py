"""The real CLI on a tiny ``algorithm = "muzero"`` run: train with periodic evaluation, resume
by name, ``eval`` and ``play``; a ``--config`` that switches the algorithm is refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from alphatriangle.app.reports import load_network
from alphatriangle.app.runs import resolve_config, run_context
from alphatriangle.core.algorithm import agent_player
from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.players import play_game, play_games
from alphatriangle.errors import ConfigError
from tests.cli import assert_mlflow_clean, metric_steps, ok, run_cli, tiny_config, train_args

MODEL = {"channels": 4, "num_blocks": 0, "extra_hidden": 8, "policy_hidden": 4, "value_hidden": 8}


def test_a_muzero_run_trains_resumes_evaluates_and_keeps_its_algorithm(workdir: Path) -> None:
    toml = tiny_config(eval={"every_steps": 3, "games": 2, "simulations": 4})
    (workdir / "mz.toml").write_text(
        'algorithm = "muzero"\n'
        + toml
        + "[model]\n"
        + "".join(f"{k} = {v}\n" for k, v in MODEL.items())
        + "[muzero]\nunroll_steps = 3\ntd_steps = 5\nprobe_every = 5\n"
    )
    args = ["train", "--config", "mz.toml", "--workers", "1"]
    first = ok(run_cli(workdir, *args, "--run-name", "mz", "--max-steps", "6"))
    assert "new run 'mz'" in first
    out = ok(run_cli(workdir, *args, "--run-name", "mz", "--max-steps", "10"))
    assert re.search(r"resumed 'mz' at step 6 from .* \(buffer \d+ positions", out), out
    assert_mlflow_clean(workdir, "mz")
    ctx = run_context("mz", workdir / "data")
    assert json.loads(ctx.config_json.read_text())["algorithm"] == "muzero"
    assert metric_steps(workdir, "mz", "loss/reward")[-1] == 10
    assert metric_steps(workdir, "mz", "eval/score_mean"), "no periodic evaluation finished"
    # The learning diagnostics of every run (positions leave MuZero's buffer only once it is
    # full, which a run this short does not reach).
    for name in (
        "learn/value_explained_variance",
        "learn/search_kl",
        "learn/sample_age",
        "eval/policy_score_mean",
    ):
        assert metric_steps(workdir, "mz", name), f"no {name} in MLflow"
    # MuZero's model diagnostics, every probe_every steps of both runs.
    for name in ("muzero/reward_rank_clear", "muzero/reward_rank_pairs", "muzero/q_spread"):
        assert metric_steps(workdir, "mz", name) == [5, 10], name

    result = ok(run_cli(workdir, "eval", "--run-name", "mz", "--games", "2", "--sims", "4"))
    assert "uniform-mcts-4" in result
    [report] = ctx.eval_dir.glob("*.json")
    scores = json.loads(report.read_text())["players"]["network"]["scores"]
    # The checkpoint played here by MuZero's own search (no noise) scores the same per seed.
    model, cfg, _ = load_network(ctx, "latest", warn=print)
    agent = agent_player(model, cfg, cfg.mcts.model_copy(update={"simulations": 4}))
    assert scores == [r.score for r in play_games(agent, [0, 1])]
    shown = ok(run_cli(workdir, "play", "--run-name", "mz", "--seed", "3", "--sims", "4"))
    score, moves = play_game(agent, 3)
    assert f"game over: score {score:.2f} in {moves} moves" in shown

    # An AlphaZero config (tiny.toml) on the MuZero run is refused before anything runs.
    refused = run_cli(workdir, *train_args("--run-name", "mz", "--max-steps", "12"))
    assert refused.returncode == 2
    [line] = [line for line in refused.stdout.splitlines() if line.strip()]
    assert "algorithm = 'alphazero', but run 'mz' was created as 'muzero'" in line
    assert "Traceback" not in refused.stdout + refused.stderr


def test_a_muzero_config_on_an_alphazero_run_is_refused(tmp_path: Path) -> None:
    run = run_context("az", tmp_path / "data")
    run.config_json.parent.mkdir(parents=True)
    run.config_json.write_text(AlphaTriangleConfig().model_dump_json())
    switched = tmp_path / "mz.toml"
    switched.write_text('algorithm = "muzero"\n')
    with pytest.raises(ConfigError, match="algorithm = 'muzero', but run 'az' was created as"):
        resolve_config(run, switched)
    # MuZero's supports shape its network: changing them on resume is a network change.
    mz = run_context("mz", tmp_path / "data")
    mz.config_json.parent.mkdir(parents=True)
    mz.config_json.write_text(AlphaTriangleConfig(algorithm="muzero").model_dump_json())
    wider = tmp_path / "wider.toml"
    wider.write_text('algorithm = "muzero"\n[muzero]\nvalue_support = 30\n')
    with pytest.raises(ConfigError, match="its model settings differ"):
        resolve_config(mz, wider)
    assert resolve_config(mz, None).algorithm == "muzero"


def test_a_stochastic_muzero_run_trains_resumes_evaluates_and_plays(workdir: Path) -> None:
    (workdir / "smz.toml").write_text(
        'algorithm = "muzero"\n'
        + tiny_config(eval={"every_steps": 0})
        + "[model]\n"
        + "".join(f"{k} = {v}\n" for k, v in MODEL.items())
        + "[muzero]\nunroll_steps = 3\ntd_steps = 5\nstochastic = true\n"
    )
    args = ["train", "--config", "smz.toml", "--workers", "1", "--run-name", "smz"]
    assert "new run 'smz'" in ok(run_cli(workdir, *args, "--max-steps", "4"))
    out = ok(run_cli(workdir, *args, "--max-steps", "6"))
    assert re.search(r"resumed 'smz' at step 4 from", out), out
    assert metric_steps(workdir, "smz", "loss/chance")[-1] == 6
    ctx = run_context("smz", workdir / "data")
    model, cfg, _ = load_network(ctx, "latest", warn=print)
    assert cfg.muzero.stochastic
    ok(run_cli(workdir, "eval", "--run-name", "smz", "--games", "2", "--sims", "4"))
    [report] = ctx.eval_dir.glob("*.json")
    scores = json.loads(report.read_text())["players"]["network"]["scores"]
    agent = agent_player(model, cfg, cfg.mcts.model_copy(update={"simulations": 4}))
    assert scores == [r.score for r in play_games(agent, [0, 1])]
    shown = ok(run_cli(workdir, "play", "--run-name", "smz", "--seed", "3", "--sims", "4"))
    score, moves = play_game(agent, 3)
    assert f"game over: score {score:.2f} in {moves} moves" in shown
    # The switch shapes the network: a config without it does not resume the run.
    (workdir / "plain.toml").write_text(
        (workdir / "smz.toml").read_text().replace("stochastic = true\n", "")
    )
    plain = ["train", "--config", "plain.toml", "--workers", "1", "--run-name", "smz"]
    refused = run_cli(workdir, *plain, "--max-steps", "8")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "model settings differ" in refused.stdout
