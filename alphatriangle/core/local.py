"""Training in one process, without Ray: self-play episodes and gradient steps alternate.

The pipeline (``alphatriangle.distributed``) is how runs train; this is the same learner and
self-play in a plain loop, for learning checks that must not depend on the pipeline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from alphatriangle.core.algorithm import searcher
from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.learner import Learner
from alphatriangle.core.selfplay import TRAINING_SEED_FLOOR, SelfPlayGames


def train_locally(
    cfg: AlphaTriangleConfig,
    seconds: float,
    report: Callable[[Learner, dict[str, float]], None] | None = None,
    positions: int | None = None,
) -> Learner:
    """Alternate self-play episodes (with the learner's current network) and gradient steps,
    ``replay_ratio`` samples trained per sample generated, for ``seconds``, until
    ``train.max_steps`` or until self-play has generated ``positions`` (when given; the last
    episode is played to its end and trained on). Each episode is searched with ``mcts.simulations_at`` the learner's
    step. ``report(learner, last_metrics)`` is called after every episode."""
    tc = cfg.train
    learner = Learner(cfg)
    games = searcher(learner.model, cfg, noise=True)
    deadline = time.perf_counter() + seconds
    metrics: dict[str, float] = {}
    limit = math.inf if positions is None else positions
    while (
        time.perf_counter() < deadline
        and learner.counters.step < tc.max_steps
        and learner.counters.samples_generated < limit
    ):
        learner.model.eval()
        simulations = cfg.mcts.simulations_at(learner.counters.step)
        if simulations != games.settings.simulations:
            mcts = cfg.mcts.model_copy(update={"simulations": simulations})
            games = searcher(learner.model, cfg, noise=True, mcts=mcts)
        seed = TRAINING_SEED_FLOOR + tc.seed * 1_000_003 + learner.counters.episodes
        [episode] = SelfPlayGames(games, [seed], 1).play()
        learner.add_episode(episode)
        while learner.can_train() and learner.counters.step < tc.max_steps:
            metrics = learner.step(learner.buffer.sample(tc.batch_size))
        if report is not None:
            report(learner, metrics)
    learner.model.eval()
    return learner
