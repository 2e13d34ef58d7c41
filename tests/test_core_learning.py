"""The learner fits real self-play data: losses fall over a few hundred steps."""

import numpy as np
import pytest
import torch

from alphatriangle.core.buffer import ReplayBuffer
from alphatriangle.core.config import MCTSConfig, TrainConfig
from alphatriangle.core.features import feature_spec
from alphatriangle.core.network import AlphaTriangleNet
from alphatriangle.core.optimization import make_optimizer, make_scheduler
from alphatriangle.core.search import NetworkEvaluator
from alphatriangle.core.selfplay import play_episode
from alphatriangle.core.training import train_step


def test_losses_fall_on_self_play_data() -> None:
    torch.manual_seed(0)
    spec = feature_spec()
    model = AlphaTriangleNet()
    evaluator = NetworkEvaluator(model)
    buffer = ReplayBuffer(5_000, spec.grid_shape, spec.other_dim, spec.action_dim, seed=0)
    mcts = MCTSConfig(simulations=16)
    seed = 0
    while len(buffer) < 200:
        buffer.add_episode(play_episode(evaluator, mcts, seed))
        seed += 1

    cfg = TrainConfig(batch_size=32, max_steps=300, lr_warmup_steps=10, learning_rate=2e-3)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    history = [
        train_step(model, optimizer, scheduler, buffer.sample(32), cfg).metrics for _ in range(300)
    ]

    def mean(name: str, steps: slice) -> float:
        return float(np.mean([m[name] for m in history[steps]]))

    first, last = slice(0, 30), slice(-30, None)
    assert mean("loss/policy", last) < mean("loss/policy", first) - 0.3
    assert mean("loss/value", last) < 0.5 * mean("loss/value", first)
    assert mean("loss/total", last) < mean("loss/total", first)
    assert all(np.isfinite(m["train/grad_norm"]) for m in history)
    assert history[-1]["train/lr"] == pytest.approx(
        cfg.learning_rate * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 289 / 290))), rel=1e-6
    )
