"""Evaluation: the trained network and the built-in baselines on the same fixed seeds."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from alphatriangle.baselines import (
    GameResult,
    GreedyPlayer,
    Player,
    RandomPlayer,
    network_player,
    play_games,
    uniform_mcts_player,
)
from alphatriangle.config import AlphaTriangleConfig
from alphatriangle.model import AlphaTriangleNet
from trieye import LoadedCheckpoint, RunContext, read_checkpoint

NETWORK = "network"


@dataclass(frozen=True)
class Summary:
    """Scores and lengths of one player over the evaluation seeds (same order as the seeds)."""

    player: str
    games: int
    mean: float
    median: float
    std: float
    max: float
    min: float
    mean_length: float
    max_length: int
    scores: list[float]
    lengths: list[int]


def summarize(player: str, results: Sequence[GameResult]) -> Summary:
    """Statistics of finished games; ``std`` is the population standard deviation."""
    scores = [r.score for r in results]
    lengths = [r.length for r in results]
    return Summary(
        player=player,
        games=len(results),
        mean=statistics.fmean(scores),
        median=statistics.median(scores),
        std=statistics.pstdev(scores),
        max=max(scores),
        min=min(scores),
        mean_length=statistics.fmean(lengths),
        max_length=max(lengths),
        scores=scores,
        lengths=lengths,
    )


@dataclass(frozen=True)
class EvalReport:
    """One evaluation: which checkpoint, which seeds, and each player's summary."""

    run_name: str
    checkpoint: str
    step: int
    seeds: list[int]
    simulations: int
    baseline_simulations: int
    created_at: str
    players: dict[str, Summary]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def parse_seeds(spec: str | None, games: int) -> list[int]:
    """``"A:B"`` means seeds A..B-1 (Python range); without a spec, seeds 0..games-1."""
    if spec is None:
        return list(range(games))
    start, sep, stop = spec.partition(":")
    if not sep or not start.strip().isdigit() or not stop.strip().isdigit():
        raise ValueError(f"--seeds {spec!r}: expected A:B with integers 0 <= A < B, e.g. 0:100")
    seeds = list(range(int(start), int(stop)))
    if not seeds:
        raise ValueError(f"--seeds {spec!r}: the range is empty; B must be larger than A")
    return seeds


def load_network(
    run: RunContext, which: str | Path
) -> tuple[AlphaTriangleNet, AlphaTriangleConfig, LoadedCheckpoint]:
    """The run's network with the weights of checkpoint ``which`` (latest, best or a path)."""
    if not run.config_json.is_file():
        raise ValueError(f"run {run.run_name!r} does not exist (no {run.config_json})")
    cfg = AlphaTriangleConfig.from_file(run.config_json)
    ckpt = read_checkpoint(run.checkpoint_dir, which)
    model = AlphaTriangleNet(cfg.model)
    weights = ckpt.state.get("model") if isinstance(ckpt.state, dict) else None
    if not isinstance(weights, dict):
        raise ValueError(
            f"{ckpt.path} holds no 'model' weights; is it an AlphaTriangle checkpoint?"
        )
    missing, unexpected = model.load_state_dict(weights, strict=False)
    shapes_differ = [
        k
        for k, v in weights.items()
        if k in model.state_dict() and model.state_dict()[k].shape != v.shape
    ]
    if missing or unexpected or shapes_differ:
        raise ValueError(
            f"{ckpt.path} does not fit the network of run {run.run_name!r} "
            f"({len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(shapes_differ)} differently shaped tensors): it was saved with another model config"
        )
    model.eval()
    return model, cfg, ckpt


def evaluate(
    model: AlphaTriangleNet,
    cfg: AlphaTriangleConfig,
    seeds: Sequence[int],
    simulations: int,
    baseline_simulations: int,
    baselines: bool = True,
) -> dict[str, Summary]:
    """Play ``seeds`` with the network (no noise, most visited move) and, when ``baselines``,
    with random, greedy one-step and uniform-prior MCTS players."""
    players: dict[str, Player] = {
        NETWORK: network_player(model, cfg.mcts.model_copy(update={"simulations": simulations}))
    }
    if baselines:
        players[f"uniform-mcts-{baseline_simulations}"] = uniform_mcts_player(
            baseline_simulations, cfg.mcts
        )
        players["greedy"] = GreedyPlayer()
        players["random"] = RandomPlayer()
    return {name: summarize(name, play_games(p, seeds)) for name, p in players.items()}


def report(
    run: RunContext,
    ckpt: LoadedCheckpoint,
    seeds: Sequence[int],
    simulations: int,
    baseline_simulations: int,
    players: dict[str, Summary],
) -> EvalReport:
    return EvalReport(
        run_name=run.run_name,
        checkpoint=str(ckpt.path),
        step=ckpt.step,
        seeds=list(seeds),
        simulations=simulations,
        baseline_simulations=baseline_simulations,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        players=players,
    )


def report_path(run: RunContext, rep: EvalReport) -> Path:
    """Where a report is written: one file per checkpoint step and seed range."""
    seeds = f"{rep.seeds[0]}-{rep.seeds[-1]}"
    return run.eval_dir / f"eval_step{rep.step:09d}_seeds{seeds}_sims{rep.simulations}.json"


def log_to_mlflow(run: RunContext, rep: EvalReport, path: Path) -> None:
    """Log a report's means as ``eval_cli/<player>/*`` metrics at the checkpoint's step and the
    JSON as an artifact. Only for when no trainer holds the run (MLflow has one writer)."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    run_id = json.loads(run.run_json.read_text())["mlflow_run_id"]
    client = MlflowClient(tracking_uri=run.mlflow_tracking_uri)
    now = int(datetime.now(UTC).timestamp() * 1000)
    metrics = [
        Metric(f"eval_cli/{s.player}/{field}", float(getattr(s, field)), now, max(rep.step, 0))
        for s in rep.players.values()
        for field in ("mean", "median", "std", "max", "mean_length")
    ]
    client.log_batch(run_id, metrics=metrics)
    client.log_artifact(run_id, str(path), "evals")
