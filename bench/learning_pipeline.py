"""Fixed-budget learning benchmark through the full pipeline: train, evaluate, plot the curve.

Run: ``.venv/bin/python bench/learning_pipeline.py [--minutes 30] [--seeds 1000:1100]
[--config run.toml]`` (opt-in).

1. Starts the real ``alphatriangle train`` on its defaults, or on ``--config`` (``--workers``
   passed through), in a temporary data directory and sends it SIGINT ``--minutes`` after launch, so the budget
   includes start-up. It must exit 0: it saves a final checkpoint on the way out. A run that
   reaches its ``max_steps`` (``--max-steps``, else its config's ``train.max_steps``, where its
   cosine learning rate ends) before then finishes there.
2. Runs ``alphatriangle eval --checkpoint latest`` on the held-out ``--seeds``: the trained
   network with the run's own player (``--sims``, by default its player count,
   ``play_simulations_at``) beside uniform-prior MCTS (``--baseline-sims``), greedy one-step
   and random play, all on the same seeds. Self-play uses seeds from 2^20 up, so these are never
   trained on.
3. Reads the run's MLflow histories of ``episode/score`` (mean self-play score per sidecar
   flush) and ``eval/score_mean`` (the periodic evaluation on seeds 0..eval.games-1) and plots
   them against wall-clock minutes, with the held-out means of step 2 as horizontal lines.

With ``--snapshots`` every checkpoint the run writes is copied into ``OUT/snapshots`` as it
appears (the run itself keeps only its newest few); ``bench/diagnosis.py --checkpoints
OUT/snapshots`` (with ``--keep-data``) turns them into the held-out curve beside the run's
``learn/*`` diagnostics.

Prints a markdown table (player | mean | median | sd | max) with the steps trained and the
positions generated, and writes ``learning_pipeline.json`` and ``learning_pipeline.png`` in
``--out``. Unlike ``bench/learning.py`` (one process, alternating self-play and learning), this
measures what a user gets from ``alphatriangle train`` in the same time.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on a benchmark machine; select before pyplot is imported
import matplotlib.pyplot as plt
from mlflow.tracking import MlflowClient

# Sibling module (bench/ is on sys.path when this file runs as a script).
from pipeline import kill_tree

from alphatriangle import metric_names as m
from alphatriangle.app.reports import parse_seeds
from alphatriangle.app.runs import run_context
from alphatriangle.core.config import AlphaTriangleConfig
from trieye import RunContext

CLI = str(Path(sys.executable).parent / "alphatriangle")
RUN_NAME = "learning-pipeline"
SELFPLAY_SEED_FLOOR = 2**20
"""Self-play seeds start here (see README), so evaluation seeds must stay below it."""
CURVES = ("episode/score", "eval/score_mean")
PLAYER_ORDER = ("network", "uniform-mcts", "greedy", "random")


@dataclass
class Child:
    """A CLI subprocess whose output a thread drains into ``lines`` (a full pipe would block
    the child) and echoes, prefixed, so a long run shows progress."""

    proc: subprocess.Popen[str]
    lines: list[str]
    reader: threading.Thread

    @property
    def text(self) -> str:
        return "".join(self.lines)


STARTED: list[subprocess.Popen[str]] = []
"""Every CLI process this benchmark started, for ``kill_tree`` when anything fails."""


def _start(args: list[str], env: dict[str, str], prefix: str) -> Child:
    proc = subprocess.Popen(
        [CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    STARTED.append(proc)
    lines: list[str] = []

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            print(f"{prefix}| {line}", end="", flush=True)

    reader = threading.Thread(target=drain, name=f"{prefix}-output", daemon=True)
    reader.start()
    return Child(proc, lines, reader)


def _finish(child: Child, timeout: float | None, what: str) -> None:
    """Wait for ``child`` to exit 0; anything else is a failed benchmark."""
    try:
        code = child.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{what} did not exit within {timeout:.0f} s") from None
    child.reader.join(timeout=10)
    if code != 0:
        raise SystemExit(f"{what} failed (exit {code}):\n{child.text[-4000:]}")


def train(
    env: dict[str, str],
    budget_s: float,
    workers: int | None,
    config: Path | None,
    stop_s: float,
    max_steps: int | None = None,
) -> Child:
    """``alphatriangle train`` for ``budget_s`` from launch, then SIGINT and a clean exit; or
    until it finishes at its ``max_steps`` (``max_steps`` when given, else its config's), if
    that comes first."""
    extra = ["--workers", str(workers)] if workers else []
    extra += ["--config", str(config.resolve())] if config else []
    extra += ["--max-steps", str(max_steps)] if max_steps else []
    child = _start(["train", "--run-name", RUN_NAME, *extra], env, "train")
    try:
        # An exit before the budget is spent is a failure (a crash, or bad input), unless the
        # run reached its max_steps.
        child.proc.wait(timeout=budget_s)
        child.reader.join(timeout=10)
        if child.proc.returncode == 0 and f"finished {RUN_NAME!r} at step " in child.text:
            return child
        raise SystemExit(
            f"training ended before the budget (exit {child.proc.returncode}):\n"
            f"{child.text[-4000:]}"
        )
    except subprocess.TimeoutExpired:
        pass
    # SIGINT to the driver alone, as Ctrl-C would: it stops its workers itself and saves.
    child.proc.send_signal(signal.SIGINT)
    _finish(child, stop_s, "training after SIGINT")
    return child


def keep_snapshots(source: Path, dest: Path, done: threading.Event, every_s: float = 20.0) -> None:
    """Until ``done`` (and once more after it), copy into ``dest`` each checkpoint of ``source``
    whose manifest is written and whose file has the manifest's size (so not one being
    written), with its manifest."""
    dest.mkdir(parents=True, exist_ok=True)
    while True:
        last = done.wait(every_s)
        for manifest in source.glob("ckpt_*.json"):
            if (dest / manifest.name).exists():
                continue
            try:
                meta = json.loads(manifest.read_text())
                pt = source / meta["file"]
                if pt.stat().st_size != meta["size"]:
                    continue
                shutil.copy2(pt, dest / pt.name)
            except FileNotFoundError:
                # The run prunes its older checkpoints as it saves new ones: this one went
                # between the listing and the copy.
                continue
            (dest / manifest.name).write_text(json.dumps(meta, indent=2))
        if last:
            return


def evaluate(env: dict[str, str], run: RunContext, args: argparse.Namespace) -> dict[str, Any]:
    """``alphatriangle eval`` on the held-out seeds; its JSON report (the newest in evals/)."""
    child = _start(
        [
            "eval",
            "--run-name",
            RUN_NAME,
            "--checkpoint",
            "latest",
            "--seeds",
            args.seeds,
            *(["--sims", str(args.sims)] if args.sims else []),
            "--baseline-sims",
            str(args.baseline_sims),
            "--baselines" if args.baselines else "--no-baselines",
        ],
        env,
        "eval",
    )
    _finish(child, None, "alphatriangle eval")
    reports = sorted(run.eval_dir.glob("*.json"), key=lambda p: p.stat().st_mtime)
    if not reports:
        raise SystemExit(f"alphatriangle eval wrote no report under {run.eval_dir}")
    report: dict[str, Any] = json.loads(reports[-1].read_text())
    return report


def curves(run: RunContext) -> dict[str, list[dict[str, float]]]:
    """Each curve's points as minutes since the first point of either curve, step and value."""
    run_id = json.loads(run.run_json.read_text())["mlflow_run_id"]
    client = MlflowClient(tracking_uri=run.mlflow_tracking_uri)
    history = {name: client.get_metric_history(run_id, name) for name in CURVES}
    stamps = [m.timestamp for points in history.values() for m in points]
    if not stamps:
        return {name: [] for name in CURVES}
    t0 = min(stamps)  # MLflow timestamps are milliseconds since the epoch
    return {
        name: [
            {"minutes": (m.timestamp - t0) / 60_000, "step": m.step, "value": m.value}
            for m in sorted(points, key=lambda m: (m.timestamp, m.step))
        ]
        for name, points in history.items()
    }


def _ordered(players: dict[str, Any]) -> list[dict[str, Any]]:
    """Players in a fixed reading order: the agent first, then strongest baseline down."""

    def rank(name: str) -> int:
        return next(
            (i for i, p in enumerate(PLAYER_ORDER) if name.startswith(p)), len(PLAYER_ORDER)
        )

    return [players[name] for name in sorted(players, key=rank)]


def plot(
    path: Path,
    series: dict[str, list[dict[str, float]]],
    report: dict[str, Any],
    budget_min: float,
    steps: int,
    periodic_games: int,
    setup: str,
) -> None:
    seeds = report["seeds"]
    held_out = f"held-out seeds {seeds[0]}-{seeds[-1]}"
    fig, ax = plt.subplots(figsize=(10, 6), dpi=120)
    selfplay = series["episode/score"]
    ax.plot(
        [p["minutes"] for p in selfplay],
        [p["value"] for p in selfplay],
        color="tab:blue",
        alpha=0.55,
        linewidth=1,
        marker=".",
        markersize=3,
        label="self-play episode/score (mean per flush, training seeds)",
    )
    periodic = series["eval/score_mean"]
    ax.plot(
        [p["minutes"] for p in periodic],
        [p["value"] for p in periodic],
        color="tab:orange",
        linewidth=2,
        marker="o",
        markersize=5,
        label=f"periodic eval/score_mean (seeds 0-{periodic_games - 1}, during training)",
    )
    styles = {"uniform-mcts": "tab:green", "greedy": "tab:purple", "random": "tab:gray"}
    end = max((p["minutes"] for s in series.values() for p in s), default=budget_min)
    for player in _ordered(report["players"]):
        name, mean = player["player"], player["mean"]
        if name == "network":
            # The trained agent is one point, at the end of training, not a level over time.
            ax.plot(
                [end],
                [mean],
                marker="*",
                markersize=16,
                color="tab:red",
                linestyle="none",
                label=f"trained agent, final checkpoint ({held_out}): {mean:.1f}",
            )
            continue
        color = next((c for p, c in styles.items() if name.startswith(p)), "black")
        ax.axhline(
            mean,
            color=color,
            linestyle="--",
            linewidth=1.5,
            label=f"{name} ({held_out}): {mean:.1f}",
        )
    ax.set_xlabel("wall-clock minutes since the run's first logged point")
    ax.set_ylabel("game score")
    ax.set_title(
        f"alphatriangle train ({setup}), {budget_min:g}-minute budget, {steps} steps; "
        f"eval {report['simulations']} sims vs uniform MCTS {report['baseline_simulations']}",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget from launch")
    parser.add_argument("--seeds", default="1000:1100", help="held-out eval seeds A:B (A..B-1)")
    parser.add_argument(
        "--sims",
        type=int,
        default=None,
        help="simulations of the trained agent (default: the run's)",
    )
    parser.add_argument(
        "--baseline-sims", type=int, default=128, help="simulations of the uniform-MCTS baseline"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/learning_pipeline"))
    parser.add_argument("--workers", type=int, default=None, help="passed to alphatriangle train")
    parser.add_argument("--config", type=Path, default=None, help="passed to alphatriangle train")
    parser.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="passed to alphatriangle train: the cosine learning-rate schedule ends there, and "
        "so does training if it comes before --minutes (default: the run's config, "
        "train.max_steps)",
    )
    parser.add_argument(
        "--baselines",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also evaluate random, greedy and uniform-MCTS players on the seeds",
    )
    parser.add_argument(
        "--stop-timeout", type=float, default=300.0, help="seconds allowed for the exit on SIGINT"
    )
    parser.add_argument(
        "--keep-data", action="store_true", help="keep the temporary data directory (prints it)"
    )
    parser.add_argument(
        "--snapshots",
        action="store_true",
        help="copy every checkpoint the run writes into OUT/snapshots (a run keeps only its "
        "newest few), for bench/diagnosis.py's curve",
    )
    args = parser.parse_args()
    if (
        args.minutes <= 0
        or (args.sims is not None and args.sims < 1)
        or args.baseline_sims < 1
        or (args.max_steps is not None and args.max_steps < 1)
    ):
        parser.error("--minutes, --sims, --baseline-sims and --max-steps must be positive")
    # Check the seeds now rather than after the whole training budget has been spent.
    try:
        seeds = parse_seeds(args.seeds, 0)
    except ValueError as err:
        parser.error(str(err))
    if seeds[-1] >= SELFPLAY_SEED_FLOOR:
        parser.error(f"--seeds must stay below {SELFPLAY_SEED_FLOOR} (self-play seeds)")
    args.out.mkdir(parents=True, exist_ok=True)
    # SIGTERM would end this process without running `finally`, orphaning the driver and its
    # Ray processes; as an exception it unwinds through the cleanup below like Ctrl-C does.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)

    data = Path(tempfile.mkdtemp(prefix="learning_pipeline-"))
    env = {**os.environ, "ALPHATRIANGLE_DATA": str(data), "CI": "1"}
    run = run_context(RUN_NAME, data)
    try:
        started = time.monotonic()
        done = threading.Event()
        if args.snapshots:
            # Snapshots are named by step: an earlier run's in the same folder would pass for
            # this one's.
            shutil.rmtree(args.out / "snapshots", ignore_errors=True)
            copier = threading.Thread(
                target=keep_snapshots,
                args=(run.checkpoint_dir, args.out / "snapshots", done),
                name="snapshots",
                daemon=True,
            )
            copier.start()
        trained = train(
            env, args.minutes * 60, args.workers, args.config, args.stop_timeout, args.max_steps
        )
        done.set()
        if args.snapshots:
            copier.join()
        train_s = time.monotonic() - started
        text = trained.text
        final = re.search(rf"(?:stopped|finished) '{RUN_NAME}' at step (\d+)", text)
        rates = re.search(r"self-play ([\d.]+) moves/s, learner (\d+) samples/s", text)
        if not final or not rates:
            raise SystemExit(f"no final step or throughput in the train output:\n{text[-4000:]}")
        steps = int(final.group(1))
        started = time.monotonic()
        report = evaluate(env, run, args)
        eval_s = time.monotonic() - started
        series = curves(run)
        # The run's own config says which seeds its periodic evaluation played.
        run_cfg = AlphaTriangleConfig.from_file(run.config_json)
        periodic_games, max_steps = run_cfg.eval.games, run_cfg.train.max_steps
        # progress/samples_generated is logged at every gradient step, so its last point is
        # the count at the final step; the throughput line only gives a rate.
        generated = _last_value(run, "progress/samples_generated")
        # MuZero's learner logs its model diagnostics (core.muzero.probe); AlphaZero has none.
        probe = {name: _last_value(run, name) for name in MUZERO_PROBE}
    finally:
        # A no-op for processes that exited; after a failure (or Ctrl-C here) it SIGKILLs the
        # driver and the Ray processes below it, which would otherwise outlive this script.
        # Never `ray stop`: it would also stop other Ray sessions on the machine.
        for proc in STARTED:
            kill_tree(proc)
        if args.keep_data:
            print(f"run data kept in {data}")
        else:
            shutil.rmtree(data, ignore_errors=True)

    png = args.out / "learning_pipeline.png"
    setup = args.config.name if args.config else "defaults"
    setup += f", max_steps {max_steps}"
    plot(png, series, report, args.minutes, steps, periodic_games, setup)
    players = _ordered(report["players"])
    summary: dict[str, Any] = {
        "machine_cpus": os.cpu_count(),
        "budget_minutes": args.minutes,
        "workers": args.workers,
        "config": str(args.config) if args.config else None,
        "max_steps": max_steps,
        "train_wall_s": round(train_s, 1),
        "eval_wall_s": round(eval_s, 1),
        "steps": steps,
        "positions_generated": generated,
        "selfplay_moves_per_s": float(rates.group(1)),
        "learner_samples_per_s": float(rates.group(2)),
        "eval": {
            "checkpoint_step": report["step"],
            "seeds": args.seeds,
            "search": report["search"],
            "simulations": report["simulations"],
            "baseline_simulations": report["baseline_simulations"],
            "players": {
                p["player"]: {
                    k: p[k]
                    for k in ("mean", "median", "std", "max", "min", "mean_length", "scores")
                }
                for p in players
            },
        },
        "muzero_probe": probe,
        "periodic_eval_seeds": f"0:{periodic_games}",
        "curves": series,
        "plot": str(png),
    }
    (args.out / "learning_pipeline.json").write_text(json.dumps(summary, indent=2))

    print(
        f"\n### alphatriangle train ({setup}), {args.minutes:g} min on {os.cpu_count()} CPUs; "
        f"eval on seeds {args.seeds} (network {report['simulations']} sims)\n"
    )
    print("| player | mean | median | sd | max |")
    print("|---|---|---|---|---|")
    for p in players:
        print(
            f"| {p['player']} | {p['mean']:.2f} | {p['median']:.2f} | {p['std']:.2f} | {p['max']:.2f} |"
        )
    print(
        f"\nsteps trained: {steps}; positions generated: "
        f"{'?' if generated is None else f'{generated:.0f}'}; throughput while training: "
        f"self-play {rates.group(1)} moves/s, learner {rates.group(2)} samples/s; "
        f"eval took {eval_s / 60:.1f} min"
    )
    if any(value is not None for value in probe.values()):
        print(
            "MuZero's model at its last probe: "
            + ", ".join(f"{name} {value:.3f}" for name, value in probe.items() if value is not None)
        )
    print(f"wrote {args.out / 'learning_pipeline.json'} and {png}")


MUZERO_PROBE = (
    m.MUZERO_REWARD_RANK_CLEAR,
    m.MUZERO_REWARD_RANK_PAIRS,
    m.MUZERO_Q_RANK_CLEAR,
    m.MUZERO_PRIOR_RANK_CLEAR,
    m.MUZERO_Q_SPREAD,
)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _last_value(run: RunContext, metric: str) -> float | None:
    run_id = json.loads(run.run_json.read_text())["mlflow_run_id"]
    points = MlflowClient(tracking_uri=run.mlflow_tracking_uri).get_metric_history(run_id, metric)
    return max(points, key=lambda m: (m.step, m.timestamp)).value if points else None


if __name__ == "__main__":
    main()
