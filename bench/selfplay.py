"""Self-play and learner throughput per core: the default network next to a uniform-prior search.

Run: ``.venv/bin/python bench/selfplay.py`` (about two minutes; ``--seconds`` per measurement).
Self-play with the network is measured with one game at a time (K = 1, the path before the
multi-game engine) and with the default games per worker (K = ``CPU_GAMES_PER_WORKER``), whose
searches share every network call; network evaluations at a batch of ``mcts_batch_size`` and of
K times that, and the forward pass alone at that batch, which bounds what self-play can reach.
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
from dataclasses import dataclass, replace
from typing import Any

import torch
from trianglengin import GameState

from alphatriangle.core.buffer import ReplayBuffer
from alphatriangle.core.config import (
    CPU_GAMES_PER_WORKER,
    AlphaTriangleConfig,
    MCTSConfig,
    ModelConfig,
    TrainConfig,
)
from alphatriangle.core.features import extract_batch, feature_spec
from alphatriangle.core.muzero.network import MuZeroNet
from alphatriangle.core.muzero.search import LatentSearcher, MuZeroEvaluator
from alphatriangle.core.network import AlphaTriangleNet
from alphatriangle.core.optimization import make_optimizer, make_scheduler
from alphatriangle.core.search import (
    NetworkEvaluator,
    Searcher,
    SearchSettings,
    UniformEvaluator,
    tree_searcher,
)
from alphatriangle.core.selfplay import SelfPlayGames, play_episode
from alphatriangle.core.training import train_step


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


def selfplay_rate(
    evaluator: NetworkEvaluator | UniformEvaluator | Searcher[Any],
    seconds: float,
    games: int = 1,
    mcts: MCTSConfig | None = None,
) -> Rate:
    """Moves/s of ``games`` self-play games at once (K), counted move by move; an evaluator is
    searched by AlphaZero's ``tree_searcher``."""
    searcher = (
        evaluator
        if isinstance(evaluator, LatentSearcher)
        else tree_searcher(evaluator, SearchSettings.of(mcts or MCTSConfig(), noise=True))  # type: ignore[arg-type]
    )
    engine = SelfPlayGames(searcher, iter(range(10_000, 1_000_000)), games)

    def one_step() -> float:
        moves = engine.running
        engine.step()
        return float(moves)

    return measure(seconds, one_step)


def states_for(count: int) -> list[GameState]:
    """``count`` positions of different games, a few moves in."""
    states = []
    for seed in range(count):
        s = GameState(initial_seed=seed)
        for _ in range(seed % 8):
            if not s.is_over():
                s.step(min(s.valid_actions()))
        states.append(s)
    return states


def forward_rate(model: AlphaTriangleNet, states: list[GameState], seconds: float) -> Rate:
    """The network's forward pass alone (features prepared once) over ``states``."""
    grid, other = extract_batch(states)
    grid_t, other_t = torch.from_numpy(grid), torch.from_numpy(other)

    def forward() -> float:
        with torch.inference_mode():
            model(grid_t, other_t)
        return float(len(states))

    return measure(seconds, forward)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="time per measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    spec = feature_spec()
    # The engine is compared on the search it was built for, 64-simulation PUCT; the default
    # search (Gumbel, fewer simulations) gets its own row.
    mcts, train = MCTSConfig(variant="puct", simulations=64), TrainConfig()
    model = AlphaTriangleNet(ModelConfig())
    params = sum(p.numel() for p in model.parameters())

    state = GameState(initial_seed=0)
    copy_us = min(_copy_and_free_us(state) for _ in range(5))

    k = CPU_GAMES_PER_WORKER
    uniform = selfplay_rate(UniformEvaluator(), args.seconds, k, mcts)
    evaluator = NetworkEvaluator(model)
    network_one = selfplay_rate(evaluator, args.seconds, 1, mcts)
    evaluator.evaluations = 0
    network = selfplay_rate(evaluator, args.seconds, k, mcts)
    evals_in_play = Rate(evaluator.evaluations, network.wall_s, network.cpu_s)
    default = MCTSConfig()
    gumbel = selfplay_rate(evaluator, args.seconds, k, default)
    muzero_cfg = AlphaTriangleConfig(algorithm="muzero")
    muzero_net = MuZeroNet(muzero_cfg.model, muzero_cfg.muzero)
    muzero_settings = SearchSettings.of(muzero_cfg.mcts, noise=True, muzero=muzero_cfg.muzero)
    muzero = selfplay_rate(
        LatentSearcher(MuZeroEvaluator(muzero_net), muzero_settings), args.seconds, k
    )
    muzero_puct = selfplay_rate(
        LatentSearcher(MuZeroEvaluator(muzero_net), replace(muzero_settings, variant="puct")),
        args.seconds,
        k,
    )

    small, large = states_for(mcts.mcts_batch_size), states_for(k * mcts.mcts_batch_size)
    batched = measure(args.seconds / 2, lambda: len(evaluator.evaluate_arrays(small)[1]))
    batched_large = measure(args.seconds / 2, lambda: len(evaluator.evaluate_arrays(large)[1]))
    forward_large = forward_rate(model, large, args.seconds / 2)

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
    print(uniform.row(f"uniform-prior search: moves, K={k}"))
    print(network_one.row("default network: moves, K=1"))
    print(network.row(f"default network: moves, K={k}"))
    print(evals_in_play.row(f"default network: NN evals in play, K={k}"))
    print(gumbel.row(f"default search ({default.variant} {default.simulations}): moves, K={k}"))
    print(muzero.row(f"MuZero latent search: moves, K={k}"))
    print(muzero_puct.row(f"MuZero latent PUCT search: moves, K={k}"))
    print(batched.row(f"NN evals, evaluate_arrays of {len(small)}"))
    print(batched_large.row(f"NN evals, evaluate_arrays of {len(large)}"))
    print(forward_large.row(f"NN forward only, batch of {len(large)}"))
    print(learner.row(f"learner samples (batch {train.batch_size})"))
    per_move = evals_in_play.count / max(network.count, 1)
    bound = forward_large.count / forward_large.cpu_s / per_move
    rate_k = network.count / network.cpu_s
    print(
        f"\nper move: uniform {1000 / (uniform.count / uniform.cpu_s):.1f} ms cpu, "
        f"network K=1 {1000 / (network_one.count / network_one.cpu_s):.1f} ms cpu, "
        f"K={k} {1000 / rate_k:.1f} ms cpu; {per_move:.1f} NN evals per move"
    )
    print(
        f"K={k} vs K=1: {rate_k / (network_one.count / network_one.cpu_s):.2f}x moves per "
        f"CPU-second; forward-only bound at batch {len(large)}: {bound:.0f} moves/s per core "
        f"(K={k} reaches {rate_k / bound:.0%} of it)"
    )


if __name__ == "__main__":
    main()
