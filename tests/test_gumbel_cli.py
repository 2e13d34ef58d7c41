"""The real CLI on a tiny run with ``[mcts] variant = "gumbel"``: train, resume by name,
``eval`` and ``play`` with its Gumbel search."""

from __future__ import annotations

import json
import re
from pathlib import Path

from alphatriangle.app.reports import load_network
from alphatriangle.app.runs import run_context
from alphatriangle.core.network import AlphaTriangleNet
from alphatriangle.core.players import network_player, play_game, play_games
from tests.cli import assert_mlflow_clean, ok, run_cli, tiny_config, train_args

GUMBEL = {"variant": "gumbel", "simulations": 8, "considered_actions": 4}


def test_a_gumbel_run_trains_resumes_and_evaluates_with_its_search(workdir: Path) -> None:
    (workdir / "tiny.toml").write_text(tiny_config(mcts=GUMBEL))
    ok(run_cli(workdir, *train_args("--run-name", "gb", "--max-steps", "4")))
    out = ok(run_cli(workdir, *train_args("--run-name", "gb", "--max-steps", "8")))
    assert re.search(r"resumed 'gb' at step 4 from", out), out
    assert_mlflow_clean(workdir, "gb")
    ctx = run_context("gb", workdir / "data")
    assert json.loads(ctx.config_json.read_text())["mcts"]["variant"] == "gumbel"

    result = ok(run_cli(workdir, "eval", "--run-name", "gb", "--seeds", "3:6", "--no-baselines"))
    assert "gumbel search, 8 simulations" in result
    [path] = ctx.eval_dir.glob("*.json")
    report = json.loads(path.read_text())
    assert report["search"] == "gumbel"
    # The same checkpoint played here with a noiseless Gumbel player scores the same, seed by
    # seed: eval used the run's Gumbel search.
    model, cfg, _ = load_network(run_context("gb", workdir / "data"), "latest", warn=print)
    assert isinstance(model, AlphaTriangleNet)
    player = network_player(model, cfg.mcts)
    expected = [r.score for r in play_games(player, [3, 4, 5])]
    assert report["players"]["network"]["scores"] == expected

    shown = ok(run_cli(workdir, "play", "--run-name", "gb", "--seed", "4"))
    assert "gumbel search, 8 simulations" in shown
    score, moves = play_game(player, 4)
    assert f"game over: score {score:.2f} in {moves} moves" in shown
