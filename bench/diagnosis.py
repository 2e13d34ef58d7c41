"""The diagnosis of a training run: held-out score of its checkpoints against wall time, beside
the ``learn/*`` diagnostics that tell the stages of learning apart.

Run: ``.venv/bin/python bench/diagnosis.py --run-name NAME --data-dir DIR [--checkpoints DIR]
[--at 5,15,30,60] [--seeds 1000:1100] [--sims N|self-play]`` (opt-in; each checkpoint plays the seeds twice, with
its search and with its policy alone: on 2 cores about 2 minutes a checkpoint for 100 seeds).

A run keeps only its newest checkpoints, so a curve needs the ones it wrote along the way:
``bench/learning_pipeline.py --snapshots --keep-data`` copies them into
``OUT/snapshots`` (pass that as ``--checkpoints``; the default is the run's own checkpoint
folder). For each minute of ``--at`` (minutes since the run's MLflow start), the checkpoint
written nearest that time plays the held-out seeds with the run's own player at its step
(``play_simulations_at``; ``--sims N`` or ``--sims self-play``, self-play's count there; no
noise) and
with the network's policy alone (the argmax of its prior over the legal moves); each gets its
mean and standard error. Beside them, from the run's MLflow history: the value head's
explained variance on fresh self-play positions, KL(search policy || prior) at the root,
the age of the learner's samples and how often a position is trained on before it leaves the
buffer (``alphatriangle.metric_names``), and the periodic evaluation and self-play scores.

Reading it: a search score well above the policy alone means the search still teaches the
network; the two together with a value that explains little of its target means the value
(and so the search's Q) is what limits the improvement target.

Prints a markdown table and writes ``diagnosis.json`` and ``diagnosis.png`` in ``--out``.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import argparse
import json
import math
import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on a benchmark machine; select before pyplot is imported
import matplotlib.pyplot as plt
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from alphatriangle import metric_names as m
from alphatriangle.app.reports import parse_seeds
from alphatriangle.app.runs import run_context
from alphatriangle.core.algorithm import agent_player, build_model
from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.learner import weight_shapes, weights_problem
from alphatriangle.core.players import Player, PolicyPlayer, play_games
from trieye import RunContext, read_checkpoint

DIAGNOSTICS = (
    m.LEARN_VALUE_EXPLAINED_VARIANCE,
    m.LEARN_SEARCH_KL,
    m.LEARN_SAMPLE_AGE,
    m.LEARN_TIMES_SAMPLED_AT_EVICTION,
    m.EVAL_SCORE_MEAN,
    m.EVAL_POLICY_SCORE_MEAN,
    m.EPISODE_SCORE,
)
WINDOW_MIN = 2.5
"""A table row's diagnostics are the mean of the points within this many minutes of it."""


@dataclass(frozen=True)
class Snapshot:
    """A checkpoint file with its manifest's step and creation time."""

    path: Path
    step: int
    created_s: float


def snapshots(folder: Path) -> list[Snapshot]:
    """The ``ckpt_*.pt`` files of ``folder`` that have a manifest, oldest first."""
    found = []
    for manifest in folder.glob("ckpt_*.json"):
        meta = json.loads(manifest.read_text())
        pt = folder / meta["file"]
        if pt.is_file():
            created = datetime.fromisoformat(meta["created_at"]).timestamp()
            found.append(Snapshot(pt, int(meta["step"]), created))
    return sorted(found, key=lambda s: s.created_s)


def nearest(found: list[Snapshot], start_s: float, minutes: list[float]) -> list[Snapshot]:
    """For each of ``minutes`` (since ``start_s``), the snapshot written nearest it, each once."""
    chosen: list[Snapshot] = []
    for minute in minutes:
        best = min(found, key=lambda s: abs(s.created_s - start_s - 60 * minute))
        if best not in chosen:
            chosen.append(best)
    return chosen


def _load(config_json: Path, checkpoint: Path) -> tuple[nn.Module, AlphaTriangleConfig]:
    cfg = AlphaTriangleConfig.from_file(config_json)
    model = build_model(cfg)
    shapes = weight_shapes(model)
    ckpt = read_checkpoint(
        checkpoint.parent, Path(checkpoint.name), lambda s: weights_problem(s.get("model"), shapes)
    )
    model.load_state_dict(ckpt.state["model"])
    return model.eval(), cfg


def _play(job: tuple[str, str, int, str, list[int]]) -> tuple[str, str, dict[int, float]]:
    """One process's share of the games: ``(checkpoint, "search" | "policy", scores by seed)``;
    the search is the run's with ``sims`` simulations."""
    config_json, checkpoint, sims, kind, seeds = job
    torch.set_num_threads(1)
    model, cfg = _load(Path(config_json), Path(checkpoint))
    if kind == "policy":
        player: Player = PolicyPlayer(model)
    else:
        mcts = cfg.mcts.model_copy(update={"simulations": sims})
        player = agent_player(model, cfg, mcts)
    return checkpoint, kind, {r.seed: r.score for r in play_games(player, seeds)}


def search_count(cfg: AlphaTriangleConfig, step: int, sims: str | None) -> int:
    """The simulations a checkpoint of step ``step`` searches with under ``--sims``."""
    if sims is None:
        return cfg.mcts.play_simulations_at(step)
    return cfg.mcts.simulations_at(step) if sims == "self-play" else int(sims)


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n); 0 for one value)."""
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, se


def histories(run: RunContext) -> tuple[float, dict[str, list[tuple[float, float]]]]:
    """The run's MLflow start (seconds since the epoch) and each of ``DIAGNOSTICS`` as
    ``(minutes since that start, value)`` points in time order."""
    run_id = json.loads(run.run_json.read_text())["mlflow_run_id"]
    client = MlflowClient(tracking_uri=run.mlflow_tracking_uri)
    start_s = client.get_run(run_id).info.start_time / 1000
    out = {}
    for name in DIAGNOSTICS:
        points = sorted(client.get_metric_history(run_id, name), key=lambda p: p.timestamp)
        out[name] = [((p.timestamp / 1000 - start_s) / 60, p.value) for p in points]
    return start_s, out


def around(points: list[tuple[float, float]], minute: float) -> float | None:
    """Mean of the values within ``WINDOW_MIN`` minutes of ``minute`` (None: no point)."""
    near = [v for t, v in points if abs(t - minute) <= WINDOW_MIN]
    return statistics.fmean(near) if near else None


def plot(path: Path, title: str, rows: list[dict[str, Any]], series: dict[str, Any]) -> None:
    fig, (top, mid, low) = plt.subplots(3, 1, figsize=(10, 11), dpi=110, sharex=True)
    for name, color, label in (
        (m.EPISODE_SCORE, "tab:blue", "self-play episode/score (training seeds, with noise)"),
        (m.EVAL_SCORE_MEAN, "tab:orange", "periodic eval/score_mean (8 seeds, search)"),
        (m.EVAL_POLICY_SCORE_MEAN, "tab:brown", "periodic eval/policy_score_mean (8 seeds)"),
    ):
        pts = series[name]
        top.plot(
            [t for t, _ in pts], [v for _, v in pts], color=color, alpha=0.35, lw=1, label=label
        )
    x = [r["minutes"] for r in rows]
    top.errorbar(
        x,
        [r["search_mean"] for r in rows],
        yerr=[r["search_se"] for r in rows],
        color="tab:red",
        marker="o",
        capsize=3,
        lw=2,
        label="held-out checkpoint, its search, no noise (mean ± SE)",
    )
    top.errorbar(
        x,
        [r["policy_mean"] for r in rows],
        yerr=[r["policy_se"] for r in rows],
        color="darkred",
        marker="s",
        capsize=3,
        lw=1.5,
        ls="--",
        label="held-out checkpoint, policy alone (mean ± SE)",
    )
    top.set_ylabel("game score")
    top.legend(fontsize=8, loc="upper left")
    top.grid(alpha=0.3)
    for name, color in (
        (m.LEARN_VALUE_EXPLAINED_VARIANCE, "tab:green"),
        (m.LEARN_SEARCH_KL, "tab:purple"),
    ):
        pts = series[name]
        mid.plot([t for t, _ in pts], [v for _, v in pts], color=color, lw=1, label=name)
    mid.axhline(0, color="gray", lw=0.8)
    mid.set_ylabel("explained variance / KL (nats)")
    mid.legend(fontsize=8, loc="upper right")
    mid.grid(alpha=0.3)
    age = series[m.LEARN_SAMPLE_AGE]
    low.plot(
        [t for t, _ in age],
        [v for _, v in age],
        color="tab:gray",
        lw=1,
        label=f"{m.LEARN_SAMPLE_AGE} (learner steps)",
    )
    low.set_ylabel("sample age (steps)")
    twin = low.twinx()
    times = series[m.LEARN_TIMES_SAMPLED_AT_EVICTION]
    twin.plot(
        [t for t, _ in times],
        [v for _, v in times],
        color="tab:cyan",
        lw=1,
        label=m.LEARN_TIMES_SAMPLED_AT_EVICTION,
    )
    twin.set_ylabel("times sampled at eviction")
    low.legend(fontsize=8, loc="upper left")
    twin.legend(fontsize=8, loc="lower right")
    low.set_xlabel("minutes since the run started")
    low.grid(alpha=0.3)
    top.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-name", required=True, help="the run to diagnose")
    parser.add_argument("--data-dir", type=Path, required=True, help="its data root")
    parser.add_argument(
        "--checkpoints", type=Path, default=None, help="folder of its checkpoints (see above)"
    )
    parser.add_argument("--at", default="5,15,30,60", help="minutes of the curve's points")
    parser.add_argument("--seeds", default="1000:1100", help="held-out seeds A:B (A..B-1)")
    parser.add_argument(
        "--sims",
        default=None,
        help="simulations of the search: a number, or 'self-play' for self-play's count at each "
        "checkpoint's step (`[mcts] simulations_at`); default: the run's player count there "
        "(`play_simulations_at`)",
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/diagnosis"))
    args = parser.parse_args()
    try:
        minutes = [float(p) for p in args.at.split(",")]
        seeds = parse_seeds(args.seeds, 0)
    except ValueError as err:
        parser.error(f"--at or --seeds: {err}")
    if args.sims not in (None, "self-play") and not (args.sims.isdigit() and int(args.sims) > 0):
        parser.error(f"--sims {args.sims!r}: use a positive number of simulations or 'self-play'")
    run = run_context(args.run_name, args.data_dir)
    if not run.config_json.is_file():
        parser.error(f"no run {args.run_name!r} under {args.data_dir} (no {run.config_json})")
    folder = args.checkpoints or run.checkpoint_dir
    found = snapshots(folder)
    if not found:
        parser.error(f"no checkpoint with a manifest in {folder}")
    start_s, series = histories(run)
    chosen = nearest(found, start_s, minutes)
    cfg = AlphaTriangleConfig.from_file(run.config_json)
    counts = {snap.path: search_count(cfg, snap.step, args.sims) for snap in chosen}

    chunk = max(1, math.ceil(len(seeds) / args.jobs))
    jobs = [
        (str(run.config_json), str(snap.path), counts[snap.path], kind, seeds[i : i + chunk])
        for snap in chosen
        for kind in ("search", "policy")
        for i in range(0, len(seeds), chunk)
    ]
    scores: dict[tuple[str, str], dict[int, float]] = {}
    with ProcessPoolExecutor(args.jobs) as pool:
        for checkpoint, kind, part in pool.map(_play, jobs):
            scores.setdefault((checkpoint, kind), {}).update(part)

    rows: list[dict[str, Any]] = []
    for snap in chosen:
        minute = (snap.created_s - start_s) / 60
        search = [scores[(str(snap.path), "search")][s] for s in seeds]
        policy = [scores[(str(snap.path), "policy")][s] for s in seeds]
        (s_mean, s_se), (p_mean, p_se) = mean_se(search), mean_se(policy)
        rows.append(
            {
                "checkpoint": snap.path.name,
                "step": snap.step,
                "simulations": counts[snap.path],
                "minutes": minute,
                "search_mean": s_mean,
                "search_se": s_se,
                "policy_mean": p_mean,
                "policy_se": p_se,
                "search_scores": search,
                "policy_scores": policy,
                **{name: around(series[name], minute) for name in DIAGNOSTICS[:4]},
            }
        )
    sims = str(cfg.mcts.simulations)
    if cfg.mcts.simulations_final is not None:
        sims += f"→{cfg.mcts.simulations_final} over {cfg.mcts.simulations_ramp_steps} steps"
    title = (
        f"{args.run_name}: {cfg.algorithm}, {cfg.mcts.variant}, self-play {sims} sims, "
        f"value target {cfg.train.value_target}; held-out seeds {args.seeds}"
    )
    print(f"\n### {title}\n")
    print(
        "| minutes | step | simulations | held-out, search | held-out, policy alone | value "
        "explained variance | search KL | sample age | times sampled |"
    )
    print("|---|---|---|---|---|---|---|---|---|")

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    for r in rows:
        print(
            f"| {r['minutes']:.1f} | {r['step']} | {r['simulations']} "
            f"| {r['search_mean']:.2f} ± {r['search_se']:.2f} "
            f"| {r['policy_mean']:.2f} ± {r['policy_se']:.2f} "
            f"| {fmt(r[m.LEARN_VALUE_EXPLAINED_VARIANCE])} | {fmt(r[m.LEARN_SEARCH_KL])} "
            f"| {fmt(r[m.LEARN_SAMPLE_AGE])} | {fmt(r[m.LEARN_TIMES_SAMPLED_AT_EVICTION])} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "diagnosis.png"
    plot(png, title, rows, series)
    (args.out / "diagnosis.json").write_text(
        json.dumps(
            {"run": args.run_name, "seeds": args.seeds, "rows": rows, "series": series}, indent=1
        )
    )
    print(f"\nwrote {args.out / 'diagnosis.json'} and {png}")


if __name__ == "__main__":
    main()
