"""What knowing the future hands was worth: the same players with a clairvoyant and a fair search.

Run: ``.venv/bin/python bench/fair_play.py --run-name NAME [--data-dir DIR] [--seeds 1000:1100]``
(opt-in; a few minutes per 100 seeds on 2 cores).

Before the fair-play change, every search was built from copies of the real game, whose random
generator deals the next hands: inside the tree, refills were exactly the hands the real game
would deal. This plays the same held-out seeds with the run's checkpoint (``--sims``, no noise)
and with uniform-prior MCTS (``--baseline-sims``), each twice: with that clairvoyant search
(``MCTSPlayer(peek=True)``) and with the fair one every command now uses. Games run in parallel
over ``--jobs`` processes (one thread each); the results do not depend on the split.

Prints a markdown table (player | search | mean | median | sd | max | fair/clairvoyant) and
writes ``bench/results/fair_play.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from alphatriangle.app.reports import load_network, parse_seeds
from alphatriangle.app.runs import data_root, run_context
from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.network import AlphaTriangleNet
from alphatriangle.core.players import (
    GameResult,
    MCTSPlayer,
    Player,
    SearchPlayer,
    play_game,
    summarize,
    uniform_mcts_player,
)
from alphatriangle.core.search import NetworkEvaluator, TreeSearcher, tree_searcher

_MODEL: AlphaTriangleNet | None = None
_CFG: AlphaTriangleConfig | None = None


def _init(run_name: str, data_dir: Path | None, checkpoint: str) -> None:
    global _MODEL, _CFG
    torch.set_num_threads(1)
    model, _CFG, _ = load_network(
        run_context(run_name, data_dir or data_root()), checkpoint, warn=print
    )
    if not isinstance(model, AlphaTriangleNet):
        raise SystemExit("bench/fair_play.py measures AlphaZero runs; this run is MuZero")
    _MODEL = model


def _player(kind: str, sims: int, peek: bool) -> Player:
    assert _MODEL is not None
    assert _CFG is not None
    if kind == "network":
        cfg = _CFG.mcts.model_copy(update={"simulations": sims})
        return MCTSPlayer(NetworkEvaluator(_MODEL), cfg, peek=peek)
    # The uniform-prior baseline's search (PUCT, sims simulations), told the future or not.
    uniform = uniform_mcts_player(sims, _CFG.mcts).searcher
    assert isinstance(uniform, TreeSearcher)
    return SearchPlayer(tree_searcher(uniform.evaluator, uniform.settings, peek=peek))


def _play(job: tuple[str, int, bool, int]) -> tuple[str, int, bool, int, float, int]:
    kind, sims, peek, seed = job
    score, length = play_game(_player(kind, sims, peek), seed)
    return kind, sims, peek, seed, score, length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-name", required=True, help="run whose checkpoint plays")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: the CLI's")
    parser.add_argument("--checkpoint", default="latest", help="'latest', 'best' or a file")
    parser.add_argument("--seeds", default="1000:1100", help="held-out seeds A:B (A..B-1)")
    parser.add_argument("--sims", type=int, default=64, help="simulations of the network")
    parser.add_argument("--baseline-sims", type=int, default=128, help="uniform-MCTS simulations")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=Path("bench/results/fair_play.json"))
    args = parser.parse_args()
    seeds = parse_seeds(args.seeds, 0)
    _init(args.run_name, args.data_dir, args.checkpoint)  # fail here, not in a worker
    assert _CFG is not None
    players = [("network", args.sims), ("uniform-mcts", args.baseline_sims)]
    jobs = [
        (kind, sims, peek, seed)
        for kind, sims in players
        for peek in (True, False)
        for seed in seeds
    ]
    started = time.monotonic()
    results: dict[tuple[str, bool], list[GameResult]] = {}
    with ProcessPoolExecutor(
        args.jobs, initializer=_init, initargs=(args.run_name, args.data_dir, args.checkpoint)
    ) as pool:
        for kind, _, peek, seed, score, length in pool.map(_play, jobs, chunksize=4):
            results.setdefault((kind, peek), []).append(GameResult(seed, score, length))
    wall = time.monotonic() - started

    rows: list[dict[str, Any]] = []
    print(
        f"\n### {args.run_name} ({args.checkpoint}), seeds {args.seeds}, no noise; "
        f"{wall / 60:.1f} min on {args.jobs} processes\n"
    )
    print("| player | search | mean | median | sd | max | fair / clairvoyant |")
    print("|---|---|---|---|---|---|---|")
    for kind, sims in players:
        peeking = summarize(kind, results[(kind, True)])
        fair = summarize(kind, results[(kind, False)])
        for label, summary in (("clairvoyant", peeking), ("fair", fair)):
            ratio = f"{fair.mean / peeking.mean:.2f}" if label == "fair" else ""
            print(
                f"| {kind} MCTS-{sims} | {label} | {summary.mean:.2f} | {summary.median:.2f} | "
                f"{summary.std:.2f} | {summary.max:.2f} | {ratio} |"
            )
            rows.append(
                {
                    "player": f"{kind}-{sims}",
                    "search": label,
                    **{k: getattr(summary, k) for k in ("mean", "median", "std", "max", "min")},
                    "mean_length": summary.mean_length,
                    "scores": summary.scores,
                }
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"run": args.run_name, "seeds": args.seeds, "wall_s": round(wall, 1), "rows": rows},
            indent=2,
        )
    )
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
