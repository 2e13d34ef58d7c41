"""PUCT against Gumbel search at the same budget, through the full pipeline (opt-in).

Run: ``.venv/bin/python bench/search_comparison.py [--minutes 15] [--seeds 1000:1100]``
(about 4 x (minutes + 5) minutes on 2 cores).

For each setting, one after another on this machine: ``bench/learning_pipeline.py`` trains a
fresh ``alphatriangle train`` run for ``--minutes`` (start-up included) with that ``[mcts]``
section, then evaluates its final checkpoint with the run's own search and simulations on the
held-out ``--seeds`` (the first setting also plays the uniform-MCTS-128, greedy and random
baselines on them). Settings: PUCT with 64 simulations (the default), and Gumbel with
n = 8, 16 and 32 simulations (m = ``--considered`` actions at the root).

Prints a markdown table (setting | held-out mean | median | sd | steps | positions | self-play
moves/s | learner samples/s) and writes ``summary.json`` and ``search_comparison.png`` (each
run's periodic evaluation score over wall-clock minutes, its final held-out mean as a star) in
``--out``.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on a benchmark machine; select before pyplot is imported
import matplotlib.pyplot as plt

BENCH = Path(__file__).resolve().parent
SETTINGS: dict[str, dict[str, object]] = {
    "puct-64": {"variant": "puct", "simulations": 64},
    "gumbel-8": {"variant": "gumbel", "simulations": 8},
    "gumbel-16": {"variant": "gumbel", "simulations": 16},
    "gumbel-32": {"variant": "gumbel", "simulations": 32},
}


def toml(mcts: dict[str, object]) -> str:
    lines = ["[mcts]"]
    for key, value in mcts.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def run_setting(
    name: str, mcts: dict[str, object], args: argparse.Namespace, baselines: bool
) -> dict[str, Any]:
    out = args.out / name
    out.mkdir(parents=True, exist_ok=True)
    config = out / f"{name}.toml"
    config.write_text(toml(mcts))
    command = [
        sys.executable,
        str(BENCH / "learning_pipeline.py"),
        "--minutes",
        f"{args.minutes:g}",
        "--seeds",
        args.seeds,
        "--config",
        str(config),
        "--out",
        str(out),
        "--baselines" if baselines else "--no-baselines",
    ]
    print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True)
    result: dict[str, Any] = json.loads((out / "learning_pipeline.json").read_text())
    return result


def plot(path: Path, results: dict[str, dict[str, Any]], minutes: float, seeds: str) -> None:
    fig, ax = plt.subplots(figsize=(10, 6), dpi=120)
    colors = dict(zip(results, ("tab:blue", "tab:orange", "tab:green", "tab:red"), strict=False))
    for name, result in results.items():
        points = result["curves"]["eval/score_mean"]
        mean = result["eval"]["players"]["network"]["mean"]
        ax.plot(
            [p["minutes"] for p in points],
            [p["value"] for p in points],
            color=colors[name],
            marker="o",
            markersize=4,
            linewidth=1.5,
            label=f"{name}: periodic eval (seeds 0-7, during training)",
        )
        end = max((p["minutes"] for p in points), default=minutes)
        ax.plot(
            [end],
            [mean],
            marker="*",
            markersize=16,
            color=colors[name],
            linestyle="none",
            label=f"{name}: final checkpoint, held-out seeds {seeds}: {mean:.1f}",
        )
    ax.set_xlabel("wall-clock minutes since the run's first logged point")
    ax.set_ylabel("game score (own search, no noise)")
    ax.set_title(f"PUCT vs Gumbel search, {minutes:g} minutes of alphatriangle train each")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget per setting")
    parser.add_argument("--seeds", default="1000:1100", help="held-out eval seeds A:B (A..B-1)")
    parser.add_argument("--considered", type=int, default=16, help="Gumbel's m")
    parser.add_argument(
        "--only", nargs="*", choices=list(SETTINGS), default=None, help="run these settings only"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/search_comparison"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = args.only or list(SETTINGS)
    results: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(chosen):
        mcts = dict(SETTINGS[name])
        if mcts["variant"] == "gumbel":
            mcts["considered_actions"] = args.considered
        # Each search is compared at its own count, also when it plays (not at the player's
        # default 128): play_simulations 1 plays with self-play's count.
        mcts["play_simulations"] = 1
        results[name] = run_setting(name, mcts, args, baselines=i == 0)

    png = args.out / "search_comparison.png"
    plot(png, results, args.minutes, args.seeds)
    rows = []
    for name, r in results.items():
        net = r["eval"]["players"]["network"]
        rows.append(
            {
                "setting": name,
                "mean": net["mean"],
                "median": net["median"],
                "sd": net["std"],
                "steps": r["steps"],
                "positions": r["positions_generated"],
                "selfplay_moves_per_s": r["selfplay_moves_per_s"],
                "learner_samples_per_s": r["learner_samples_per_s"],
            }
        )
    baselines = {
        name: p["mean"]
        for r in results.values()
        for name, p in r["eval"]["players"].items()
        if name != "network"
    }
    summary = {
        "minutes": args.minutes,
        "seeds": args.seeds,
        "considered": args.considered,
        "machine_cpus": os.cpu_count(),
        "rows": rows,
        "baselines": baselines,
        "plot": str(png),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\n### {args.minutes:g} min of alphatriangle train each, held-out seeds {args.seeds}\n")
    print("| setting | mean | median | sd | steps | positions | self-play moves/s | samples/s |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        positions = "?" if row["positions"] is None else f"{row['positions']:.0f}"
        print(
            f"| {row['setting']} | {row['mean']:.2f} | {row['median']:.2f} | {row['sd']:.2f} | "
            f"{row['steps']} | {positions} | {row['selfplay_moves_per_s']:.1f} | "
            f"{row['learner_samples_per_s']:.0f} |"
        )
    gumbels = [r for r in rows if r["setting"].startswith("gumbel")]
    puct = [r for r in rows if r["setting"] == "puct-64"]
    if gumbels and puct:
        best = max(gumbels, key=lambda r: r["mean"])
        print(
            f"\nbest Gumbel ({best['setting']}) / PUCT-64 held-out mean: "
            f"{best['mean'] / puct[0]['mean']:.2f}x"
        )
    print("baselines: " + ", ".join(f"{k} {v:.2f}" for k, v in baselines.items()))
    print(f"wrote {args.out / 'summary.json'} and {png}")


if __name__ == "__main__":
    main()
