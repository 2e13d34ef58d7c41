"""Does the agent learn? Opt-in (``pytest -m slow``, about 7 minutes on 2 cores): it fails
when five minutes of training from scratch no longer beat uniform-prior search."""

from __future__ import annotations

import statistics

import pytest
import torch

from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.local import train_locally
from alphatriangle.core.network import AlphaTriangleNet
from alphatriangle.core.players import network_player, play_games, uniform_mcts_player

HELD_OUT = range(1000, 1040)
"""Evaluation seeds: training plays seeds from ``TRAINING_SEED_FLOOR`` up."""


@pytest.mark.slow
@pytest.mark.timeout(1800)  # five minutes of training, then 160 evaluation games
def test_five_minutes_of_training_beat_uniform_prior_search_with_twice_the_simulations() -> None:
    torch.set_num_threads(1)
    cfg = AlphaTriangleConfig()
    learner = train_locally(cfg, seconds=300)
    assert learner.counters.step > 100, learner.counters
    assert isinstance(learner.model, AlphaTriangleNet)
    trained = play_games(network_player(learner.model, cfg.mcts), HELD_OUT)
    uniform = play_games(uniform_mcts_player(2 * cfg.mcts.simulations, cfg.mcts), HELD_OUT)
    trained_mean = statistics.fmean(r.score for r in trained)
    uniform_mean = statistics.fmean(r.score for r in uniform)
    assert trained_mean > 1.2 * uniform_mean, (trained_mean, uniform_mean)
