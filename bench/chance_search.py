"""Does more search make a better player? One imagined deal against chance nodes, at fixed weights.

Run: ``.venv/bin/python bench/chance_search.py --run-name NAME [--data-dir DIR] [--checkpoint
FILE] [--seeds 1000:1050] [--sims 32,128,512] [--outcomes 1,4]`` (opt-in; 512 simulations take
long on a few cores: start with few seeds).

The run's checkpoint plays the held-out ``--seeds`` without noise (``MCTSPlayer``, the run's
``[mcts]`` settings) at each simulation count of ``--sims``, once per value of
``mcts.chance_outcomes`` in ``--outcomes``: 1 is the search with one imagined deal shared by
the whole tree, more is chance nodes with that many deals each. Every setting plays the same
seeds, one setting after the other, the games of a setting split over ``--jobs`` processes
(one thread each; the scores do not depend on the split). Prints, per simulation count, mean ±
standard error of each setting and the paired difference of each against the first, then the
paired difference of each setting's largest simulation count against its smallest, and the
self-play moves/s (with noise, ``CPU_GAMES_PER_WORKER`` games at once, one thread, per CPU
second) of each setting at the run's own simulation count. Writes
``bench/results/chance_search.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import argparse
import json
import math
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from alphatriangle.app.reports import load_network, parse_seeds
from alphatriangle.app.runs import data_root, run_context
from alphatriangle.core.config import CPU_GAMES_PER_WORKER, AlphaTriangleConfig
from alphatriangle.core.network import AlphaTriangleNet
from alphatriangle.core.players import MCTSPlayer, play_games
from alphatriangle.core.search import NetworkEvaluator, SearchSettings, tree_searcher
from alphatriangle.core.selfplay import SelfPlayGames

_MODEL: AlphaTriangleNet | None = None
_CFG: AlphaTriangleConfig | None = None


def _init(run_name: str, data_dir: Path | None, checkpoint: str) -> None:
    global _MODEL, _CFG
    torch.set_num_threads(1)
    model, _CFG, _ = load_network(
        run_context(run_name, data_dir or data_root()), checkpoint, warn=print
    )
    if not isinstance(model, AlphaTriangleNet):
        raise SystemExit("bench/chance_search.py measures AlphaZero runs; this run is MuZero")
    _MODEL = model


def _play(job: tuple[int, int, list[int]]) -> list[tuple[int, float]]:
    outcomes, sims, seeds = job
    assert _MODEL is not None
    assert _CFG is not None
    cfg = _CFG.mcts.model_copy(update={"simulations": sims, "chance_outcomes": outcomes})
    player = MCTSPlayer(NetworkEvaluator(_MODEL), cfg)
    return [(r.seed, r.score) for r in play_games(player, seeds)]


def _selfplay_rate(job: tuple[int, float]) -> float:
    """Self-play moves per CPU second with ``chance_outcomes = job[0]`` for ``job[1]`` s."""
    outcomes, seconds = job
    assert _MODEL is not None
    assert _CFG is not None
    cfg = _CFG.mcts.model_copy(update={"chance_outcomes": outcomes})
    searcher = tree_searcher(NetworkEvaluator(_MODEL), SearchSettings.of(cfg, noise=True))
    games = SelfPlayGames(searcher, iter(range(10_000, 1_000_000)), CPU_GAMES_PER_WORKER)
    moves, wall, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        moves += games.running
        games.step()
    return moves / (time.process_time() - cpu)


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n))."""
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return statistics.fmean(values), se


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-name", required=True, help="run whose checkpoint plays")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: the CLI's")
    parser.add_argument("--checkpoint", default="latest", help="'latest', 'best' or a file")
    parser.add_argument("--seeds", default="1000:1050", help="held-out seeds A:B (A..B-1)")
    parser.add_argument("--sims", default="32,128,512", help="simulation counts, comma-separated")
    parser.add_argument("--outcomes", default="1,4", help="chance_outcomes values; 1 = one deal")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--selfplay-seconds", type=float, default=30.0)
    parser.add_argument("--json", type=Path, default=Path("bench/results/chance_search.json"))
    args = parser.parse_args()
    seeds = parse_seeds(args.seeds, 0)
    sims_list = [int(s) for s in args.sims.split(",")]
    outcome_list = [int(k) for k in args.outcomes.split(",")]
    _init(args.run_name, args.data_dir, args.checkpoint)  # fail here, not in a worker
    assert _CFG is not None
    chunks = [seeds[i :: args.jobs] for i in range(args.jobs) if seeds[i :: args.jobs]]
    scores: dict[tuple[int, int], dict[int, float]] = {}
    started = time.monotonic()
    print(f"\n### {args.run_name} ({Path(args.checkpoint).name}), seeds {args.seeds}, no noise\n")
    print("| simulations | " + " | ".join(f"chance_outcomes={k}" for k in outcome_list), end="")
    print(" | " + " | ".join(f"{k} - {outcome_list[0]} (paired)" for k in outcome_list[1:]) + " |")
    print("|---" * (2 * len(outcome_list)) + "|")
    with ProcessPoolExecutor(
        args.jobs, initializer=_init, initargs=(args.run_name, args.data_dir, args.checkpoint)
    ) as pool:
        for sims in sims_list:
            for outcomes in outcome_list:
                jobs = [(outcomes, sims, chunk) for chunk in chunks]
                scores[(outcomes, sims)] = {
                    seed: score for part in pool.map(_play, jobs) for seed, score in part
                }
            cells = [
                "{:.1f} ± {:.1f}".format(*mean_se([scores[(k, sims)][s] for s in seeds]))
                for k in outcome_list
            ]
            diffs = [
                "{:+.1f} ± {:.1f}".format(
                    *mean_se(
                        [scores[(k, sims)][s] - scores[(outcome_list[0], sims)][s] for s in seeds]
                    )
                )
                for k in outcome_list[1:]
            ]
            print(f"| {sims} | " + " | ".join(cells + diffs) + " |", flush=True)
        low, high = sims_list[0], sims_list[-1]
        print(f"\npaired {high} - {low} simulations:")
        for k in outcome_list:
            diff = [scores[(k, high)][s] - scores[(k, low)][s] for s in seeds]
            print("  chance_outcomes={}: {:+.1f} ± {:.1f}".format(k, *mean_se(diff)))
        wall = time.monotonic() - started
        rates = list(pool.map(_selfplay_rate, [(k, args.selfplay_seconds) for k in outcome_list]))
    print(
        f"\nself-play moves per CPU second ({_CFG.mcts.variant} {_CFG.mcts.simulations} "
        f"simulations, {CPU_GAMES_PER_WORKER} games, one thread each): "
        + ", ".join(
            f"chance_outcomes={k}: {r:.1f}" for k, r in zip(outcome_list, rates, strict=True)
        )
    )
    print(f"({wall / 60:.1f} min of games on {args.jobs} processes)")
    rows: list[dict[str, Any]] = [
        {
            "chance_outcomes": k,
            "simulations": sims,
            "mean": mean_se(list(scores[(k, sims)].values()))[0],
            "se": mean_se(list(scores[(k, sims)].values()))[1],
            "scores": [scores[(k, sims)][s] for s in seeds],
        }
        for sims in sims_list
        for k in outcome_list
    ]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "run": args.run_name,
                "checkpoint": Path(args.checkpoint).name,
                "seeds": args.seeds,
                "wall_s": round(wall, 1),
                "rows": rows,
                "selfplay_moves_per_cpu_s": dict(zip(map(str, outcome_list), rates, strict=True)),
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
