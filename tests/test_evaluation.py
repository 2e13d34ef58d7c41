"""``evaluate_plan``: the seeds shared between real processes give one process's results, and a
stop ends every process."""

from __future__ import annotations

import multiprocessing
import os

import pytest
import torch

from alphatriangle.core.algorithm import agent_player, build_model
from alphatriangle.core.config import AlphaTriangleConfig, ModelConfig
from alphatriangle.core.evaluation import EvalPlan, default_jobs, evaluate_plan
from alphatriangle.core.players import evaluate, play_games

SMALL = ModelConfig(channels=4, num_blocks=1, extra_hidden=4, policy_hidden=4, value_hidden=8)


def _plan(simulations: int, algorithm: str = "alphazero") -> EvalPlan:
    cfg = AlphaTriangleConfig(algorithm=algorithm, model=SMALL)
    torch.manual_seed(3)
    model = build_model(cfg)
    mcts = cfg.mcts.model_copy(update={"simulations": simulations})
    return EvalPlan(cfg, model.state_dict(), mcts, 4, True)


@pytest.mark.parametrize("algorithm", ["alphazero", "muzero"])
def test_seeds_shared_between_processes_give_one_processes_summaries(algorithm: str) -> None:
    plan = _plan(4, algorithm)
    seeds = [3, 4, 5, 6, 7]
    shared = evaluate_plan(plan, seeds, 3)  # shares of 2, 2 and 1 seeds
    alone = evaluate_plan(plan, seeds, 1)
    assert shared == alone
    assert list(shared) == ["network", "uniform-mcts-4", "greedy", "random"]
    # The same as players.evaluate in this process, game by game.
    model = build_model(plan.cfg)
    model.load_state_dict(plan.weights)
    agent = agent_player(model.eval(), plan.cfg, plan.mcts)
    assert evaluate(agent, plan.cfg.mcts, seeds, 4) == alone
    assert alone["network"].scores == [r.score for r in play_games(agent, seeds)]
    assert multiprocessing.active_children() == []


def test_a_stop_between_moves_ends_every_process() -> None:
    # 100,000 games would take hours: the call returns because each process stops.
    plan = _plan(16)
    polls = 0

    def stop_on_the_third_poll() -> None:
        nonlocal polls
        polls += 1
        if polls == 3:
            raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt, match="stop"):
        evaluate_plan(plan, range(100_000), 2, stop_on_the_third_poll)
    assert polls == 3
    assert multiprocessing.active_children() == []


def test_default_jobs_is_one_per_cpu_and_at_most_one_per_game() -> None:
    cpus = len(os.sched_getaffinity(0))
    assert default_jobs(1) == 1
    assert default_jobs(10**6) == cpus
    assert default_jobs(2) == min(2, cpus)
