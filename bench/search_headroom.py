"""Search headroom: one checkpoint, its own search at several simulation counts, same seeds.

Run: ``.venv/bin/python bench/search_headroom.py --run-name NAME [--data-dir DIR]
[--sims 32,128,512] [--seeds 1000:1100]`` (opt-in; on 2 cores, 100 seeds at 512 simulations
take tens of minutes).

A network whose search no longer gains from more simulations has a value or a model the search
cannot exploit; one that gains a lot has headroom the training target (at the run's count)
leaves unused. This plays the held-out seeds with the run's checkpoint (``--checkpoint``) and
its own search (``mcts.variant`` of the run, AlphaZero or MuZero, no noise) at each count of
``--sims``, and with the network's policy alone (no search: the argmax of its prior over the
legal moves). Each row gives the mean with its standard error and the paired difference to the
first count over the same seeds (mean ± standard error of the per-seed differences). Games run
over ``--jobs`` processes (one thread each, seeds in lockstep within a process); the results do
not depend on the split.

Prints a markdown table and writes ``bench/results/search_headroom.json``.
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
from torch import nn

from alphatriangle.app.reports import load_network, parse_seeds
from alphatriangle.app.runs import data_root, run_context
from alphatriangle.core.algorithm import agent_player
from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.players import GameResult, Player, PolicyPlayer, play_games

POLICY_ALONE = 0
"""The ``sims`` of the network's policy without search."""

_MODEL: nn.Module | None = None
_CFG: AlphaTriangleConfig | None = None


def _init(run_name: str, data_dir: Path | None, checkpoint: str) -> None:
    global _MODEL, _CFG
    torch.set_num_threads(1)
    run = run_context(run_name, data_dir or data_root())
    _MODEL, _CFG, _ = load_network(run, checkpoint, warn=print)


def _player(sims: int) -> Player:
    assert _MODEL is not None
    assert _CFG is not None
    if sims == POLICY_ALONE:
        return PolicyPlayer(_MODEL)
    return agent_player(_MODEL, _CFG, _CFG.mcts.model_copy(update={"simulations": sims}))


def _play(job: tuple[int, list[int]]) -> tuple[int, list[GameResult]]:
    sims, seeds = job
    return sims, play_games(_player(sims), seeds)


def parse_sims(spec: str) -> list[int]:
    """``"32,128,512"`` as distinct positive counts in the given order."""
    parts = [p.strip() for p in spec.split(",")]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"--sims {spec!r}: expected positive integers separated by commas")
    counts = [int(p) for p in parts]
    if len(set(counts)) != len(counts):
        raise ValueError(f"--sims {spec!r}: a count appears twice")
    return counts


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n); 0 for one value)."""
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, se


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-name", required=True, help="run whose checkpoint plays")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: the CLI's")
    parser.add_argument("--checkpoint", default="latest", help="'latest', 'best' or a file")
    parser.add_argument("--seeds", default="1000:1100", help="held-out seeds A:B (A..B-1)")
    parser.add_argument(
        "--sims", default="32,128,512", help="simulation counts, the first the reference"
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=Path("bench/results/search_headroom.json"))
    args = parser.parse_args()
    try:
        sims = parse_sims(args.sims)
    except ValueError as err:
        parser.error(str(err))
    seeds = parse_seeds(args.seeds, 0)
    _init(args.run_name, args.data_dir, args.checkpoint)  # fail here, not in a worker
    assert _CFG is not None
    chunk = max(1, math.ceil(len(seeds) / args.jobs))
    jobs = [
        (count, seeds[i : i + chunk])
        for count in [*sims, POLICY_ALONE]
        for i in range(0, len(seeds), chunk)
    ]
    started = time.monotonic()
    scores: dict[int, dict[int, float]] = {}
    with ProcessPoolExecutor(
        args.jobs, initializer=_init, initargs=(args.run_name, args.data_dir, args.checkpoint)
    ) as pool:
        for count, results in pool.map(_play, jobs):
            scores.setdefault(count, {}).update({r.seed: r.score for r in results})
    wall = time.monotonic() - started

    reference = [scores[sims[0]][s] for s in seeds]
    print(
        f"\n### {args.run_name} ({args.checkpoint}, {_CFG.algorithm}, {_CFG.mcts.variant}), "
        f"seeds {args.seeds}, no noise; {wall / 60:.1f} min on {args.jobs} processes\n"
    )
    print(f"| simulations | mean ± se | median | paired difference to {sims[0]} ± se |")
    print("|---|---|---|---|")
    rows: list[dict[str, Any]] = []
    for count in [*sims, POLICY_ALONE]:
        values = [scores[count][s] for s in seeds]
        mean, se = mean_se(values)
        diff, diff_se = mean_se([v - r for v, r in zip(values, reference, strict=True)])
        label = "policy alone (no search)" if count == POLICY_ALONE else str(count)
        paired = "" if count == sims[0] else f"{diff:+.2f} ± {diff_se:.2f}"
        print(f"| {label} | {mean:.2f} ± {se:.2f} | {statistics.median(values):.2f} | {paired} |")
        rows.append(
            {
                "simulations": count,
                "mean": mean,
                "se": se,
                "median": statistics.median(values),
                "paired_difference": diff,
                "paired_difference_se": diff_se,
                "scores": values,
            }
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "run": args.run_name,
                "checkpoint": args.checkpoint,
                "seeds": args.seeds,
                "reference_simulations": sims[0],
                "wall_s": round(wall, 1),
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
