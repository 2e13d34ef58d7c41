"""Does the agent learn? Train from scratch in-process, then compare it with non-learned players.

Run: ``.venv/bin/python bench/learning.py`` (opt-in; ``--minutes`` of training, 10 by default,
plus a few minutes of evaluation). Self-play and the learner alternate in this one process on
one thread, keeping ``replay_ratio`` samples trained per sample generated. ``--steps N`` (gradient
steps) or ``--positions N`` (self-play positions) sets a compute budget instead, which a loaded
machine does not shrink: with either, training runs without a time limit unless ``--minutes``
is also given (the first budget reached ends it). Then every player plays the same fixed seeds:
the trained network (its search without noise, with ``[eval] simulations`` when set, else
``[mcts] simulations``), random play, greedy one-step play and uniform-prior MCTS with 128
simulations. Exit status 1 when the trained agent does not beat the uniform-prior search; 2 on
bad arguments.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.learner import Learner
from alphatriangle.core.local import train_locally
from alphatriangle.core.network import AlphaTriangleNet
from alphatriangle.core.players import (
    GreedyPlayer,
    Player,
    RandomPlayer,
    network_player,
    play_games,
    uniform_mcts_player,
)
from alphatriangle.errors import ConfigError


class _Progress:
    """A line every 30 s: episodes, positions, gradient steps and losses."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()

    def __call__(self, learner: Learner, metrics: dict[str, float]) -> None:
        now = time.perf_counter()
        if now - self.last < 30:
            return
        self.last = now
        c = learner.counters
        losses = " ".join(f"{k}={v:.3f}" for k, v in metrics.items() if k.startswith("loss/"))
        print(
            f"[{now - self.start:6.0f}s] episodes {c.episodes:5d} positions "
            f"{c.samples_generated:7d} steps {c.step:6d} {losses}",
            flush=True,
        )


def evaluate(name: str, player: Player, seeds: range) -> tuple[str, float, float, float, float]:
    start = time.perf_counter()
    results = play_games(player, seeds)
    scores = np.array([r.score for r in results])
    lengths = np.array([r.length for r in results])
    sem = float(scores.std(ddof=1) / np.sqrt(len(scores))) if len(scores) > 1 else 0.0
    row = (name, float(scores.mean()), sem, float(lengths.mean()), time.perf_counter() - start)
    print(f"  {name:<32} {row[1]:8.2f} ± {row[2]:5.2f} {row[3]:8.1f} {row[4]:7.0f}s", flush=True)
    return row


def _positive(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes", type=float, help="training time (default 10 without --steps/--positions)"
    )
    parser.add_argument("--steps", type=_positive, help="budget: gradient steps")
    parser.add_argument("--positions", type=_positive, help="budget: self-play positions")
    parser.add_argument("--config", type=Path, help="a .toml/.json AlphaTriangleConfig")
    parser.add_argument("--first-seed", type=int, default=1000, help="first evaluation seed")
    parser.add_argument("--games", type=int, default=100, help="evaluation games per player")
    args = parser.parse_args()
    if args.minutes is not None and not args.minutes > 0:
        parser.error("--minutes must be a positive number of minutes")
    torch.set_num_threads(1)
    try:
        cfg = AlphaTriangleConfig.from_file(args.config) if args.config else AlphaTriangleConfig()
    except ConfigError as err:
        parser.error(str(err))
    if args.steps is not None:
        cfg = cfg.model_copy(
            update={"train": cfg.train.model_copy(update={"max_steps": args.steps})}
        )
    unbounded = args.steps is not None or args.positions is not None
    minutes = args.minutes if args.minutes is not None else (math.inf if unbounded else 10.0)
    budget = ", ".join(
        f"{value:g} {name}"
        for name, value in (
            ("min", minutes),
            ("steps", args.steps),
            ("positions", args.positions),
        )
        if value is not None and value != math.inf
    )
    print(f"training from scratch ({budget}) with {cfg.model_dump_json()}", flush=True)
    learner = train_locally(cfg, 60 * minutes, _Progress(), positions=args.positions)
    model = learner.model
    assert isinstance(model, AlphaTriangleNet), "bench/learning.py trains AlphaZero"
    c = learner.counters
    print(f"trained: {c.step} steps, {c.samples_generated} positions, {c.episodes} episodes")

    seeds = range(args.first_seed, args.first_seed + args.games)
    print(f"\nevaluation on seeds {seeds.start}-{seeds.stop - 1}:")
    print(f"  {'player':<32} {'mean score':>16} {'length':>8} {'time':>8}")
    sims = cfg.eval.simulations or cfg.mcts.simulations
    mcts = cfg.mcts.model_copy(update={"simulations": sims})
    trained = evaluate(f"trained network, MCTS-{sims}", network_player(model, mcts), seeds)
    evaluate("random", RandomPlayer(), seeds)
    evaluate("greedy one-step", GreedyPlayer(), seeds)
    uniform = evaluate("uniform-prior MCTS-128", uniform_mcts_player(128, cfg.mcts), seeds)
    verdict = "beats" if trained[1] > uniform[1] else "does NOT beat"
    print(
        f"\nthe trained agent {verdict} uniform-prior MCTS-128 ({trained[1]:.2f} vs {uniform[1]:.2f})"
    )
    raise SystemExit(0 if trained[1] > uniform[1] else 1)


if __name__ == "__main__":
    main()
