"""Self-play and learner throughput per core: the default network next to a uniform-prior search.

Run: ``.venv/bin/python bench/selfplay.py`` (about a minute; ``--seconds`` per measurement).
Everything runs in this one process on one thread (``torch.set_num_threads(1)``), so the rates
are per core. "wall" rates use elapsed time; "cpu" rates use this process's CPU time, which is
the better per-core figure when other processes share the machine.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from trianglengin import GameState

from alphatriangle.core.buffer import ReplayBuffer
from alphatriangle.core.config import MCTSConfig, ModelConfig, TrainConfig
from alphatriangle.core.features import feature_spec
from alphatriangle.core.learner import make_optimizer, make_scheduler, train_step
from alphatriangle.core.network import AlphaTriangleNet
from alphatriangle.core.search import NetworkEvaluator, UniformEvaluator
from alphatriangle.core.selfplay import play_episode


@dataclass
class Rate:
    count: float
    wall_s: float
    cpu_s: float

    def row(self, unit: str) -> str:
        return (
            f"{unit:<34} {self.count / self.wall_s:>10.1f} {self.count / self.cpu_s:>10.1f}"
            f" {self.count:>10.0f} {self.wall_s:>7.1f}"
        )


def measure(seconds: float, work: Callable[[], float]) -> Rate:
    """Repeat ``work`` (returns units done) until ``seconds`` of wall time have passed."""
    count, wall, cpu = 0.0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        count += work()
    return Rate(count, time.perf_counter() - wall, time.process_time() - cpu)


def _copy_and_free_us(state: GameState, n: int = 100) -> float:
    """What MCTS pays per simulation to materialise (and later drop) a child state."""
    start = time.perf_counter()
    copies = [state.copy() for _ in range(n)]
    del copies
    return (time.perf_counter() - start) / n * 1e6


def selfplay_rate(evaluator: NetworkEvaluator | UniformEvaluator, seconds: float) -> Rate:
    mcts = MCTSConfig()
    seeds = iter(range(10_000, 20_000))
    return measure(seconds, lambda: play_episode(evaluator, mcts, next(seeds)).length)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="time per measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    spec = feature_spec()
    mcts, train = MCTSConfig(), TrainConfig()
    model = AlphaTriangleNet(ModelConfig())
    params = sum(p.numel() for p in model.parameters())

    state = GameState(initial_seed=0)
    copy_us = min(_copy_and_free_us(state) for _ in range(5))

    uniform = selfplay_rate(UniformEvaluator(), args.seconds)
    evaluator = NetworkEvaluator(model)
    network = selfplay_rate(evaluator, args.seconds)
    evals_in_play = Rate(evaluator.evaluations, network.wall_s, network.cpu_s)

    states = []
    for seed in range(mcts.mcts_batch_size):
        s = GameState(initial_seed=seed)
        for _ in range(seed):
            if not s.is_over():
                s.step(min(s.valid_actions()))
        states.append(s)
    batched = measure(args.seconds / 2, lambda: len(evaluator.evaluate_batch(states)))

    buffer = ReplayBuffer(20_000, spec.grid_shape, spec.other_dim, spec.action_dim)
    seed = 0
    while len(buffer) < 2 * train.batch_size:
        buffer.add_episode(
            play_episode(UniformEvaluator(), mcts.model_copy(update={"simulations": 8}), seed)
        )
        seed += 1
    learner_model = AlphaTriangleNet(ModelConfig())
    optimizer = make_optimizer(learner_model, train)
    scheduler = make_scheduler(optimizer, train)

    def learn() -> float:
        train_step(learner_model, optimizer, scheduler, buffer.sample(train.batch_size), train)
        return float(train.batch_size)

    learn()
    learner = measure(args.seconds / 2, learn)

    print(
        f"\nAlphaTriangle self-play benchmark: 1 thread, {mcts.simulations} simulations/move, "
        f"mcts_batch_size {mcts.mcts_batch_size}, cpuct {mcts.cpuct}, tree reuse {mcts.tree_reuse}"
    )
    print(
        f"default network: channels {model.cfg.channels}, blocks {model.cfg.num_blocks}, "
        f"{params:,} parameters (untrained); trianglengin state copy+free {copy_us:.0f} us"
    )
    print(f"\n{'measurement':<34} {'/s wall':>10} {'/s cpu':>10} {'count':>10} {'wall s':>7}")
    print(uniform.row("uniform-prior search: moves"))
    print(network.row("default network: moves"))
    print(evals_in_play.row("default network: NN evals in play"))
    print(batched.row(f"NN evals, evaluate_batch of {len(states)}"))
    print(learner.row(f"learner samples (batch {train.batch_size})"))
    print(
        f"\nper move: uniform {1000 / (uniform.count / uniform.cpu_s):.1f} ms cpu, "
        f"network {1000 / (network.count / network.cpu_s):.1f} ms cpu; "
        f"{evals_in_play.count / max(network.count, 1):.1f} NN evals per move"
    )


if __name__ == "__main__":
    main()
