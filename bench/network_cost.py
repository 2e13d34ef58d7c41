"""Self-play cost of a network size: moves per CPU second of the defaults beside a config's.

Run: ``.venv/bin/python bench/network_cost.py --config bench/configs/levers_network_wider.toml``
(opt-in; about two minutes). Each measurement plays ``CPU_GAMES_PER_WORKER`` games in lockstep
with the run's own search (noise on, as self-play) and a freshly initialised network, on one
thread, for ``--seconds`` of this process's CPU time; the defaults and the config alternate
A B A B, ``--pairs`` times, and the ratio is printed pair by pair, so that a machine whose speed
drifts during the run still compares like with like.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import argparse
import itertools
import time
from pathlib import Path

import torch

from alphatriangle.core.algorithm import build_model, searcher
from alphatriangle.core.config import CPU_GAMES_PER_WORKER, AlphaTriangleConfig
from alphatriangle.core.selfplay import SelfPlayGames

SELFPLAY_SEED_FLOOR = 2**20


def moves_per_cpu_second(cfg: AlphaTriangleConfig, seconds: float) -> float:
    """Moves of ``CPU_GAMES_PER_WORKER`` lockstep self-play games per CPU second."""
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    games = SelfPlayGames(
        searcher(model, cfg, noise=True),
        itertools.count(SELFPLAY_SEED_FLOOR),
        CPU_GAMES_PER_WORKER,
    )
    moves = 0
    start = time.process_time()
    while time.process_time() - start < seconds:
        moving = games.running  # every running game makes one move per step
        games.step()
        moves += moving
    return moves / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="a .toml/.json config")
    parser.add_argument("--seconds", type=float, default=15.0, help="CPU seconds per measurement")
    parser.add_argument("--pairs", type=int, default=3, help="alternating pairs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    configs = {
        "defaults": AlphaTriangleConfig(),
        "config": AlphaTriangleConfig.from_file(args.config),
    }
    print("| pair | defaults moves/CPU-s | config moves/CPU-s | config / defaults |")
    print("|---|---|---|---|")
    for pair in range(1, args.pairs + 1):
        rates = {name: moves_per_cpu_second(cfg, args.seconds) for name, cfg in configs.items()}
        ratio = rates["config"] / rates["defaults"]
        print(
            f"| {pair} | {rates['defaults']:.1f} | {rates['config']:.1f} | {ratio:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
