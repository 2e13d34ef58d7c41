"""Evaluation reports of the front end: which checkpoint to load, the JSON report, MLflow."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from torch import nn

from alphatriangle.core.algorithm import build_model
from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.learner import weight_shapes, weights_problem
from alphatriangle.core.players import Summary
from alphatriangle.errors import UsageError, shown
from alphatriangle.metric_names import EVAL_CLI_PREFIX
from trieye import CheckpointError, LoadedCheckpoint, RunContext, read_checkpoint, read_run


@dataclass(frozen=True)
class EvalReport:
    """One evaluation: which checkpoint, which seeds, and each player's summary."""

    run_name: str
    checkpoint: str
    step: int
    seeds: list[int]
    search: str
    """The network player's search, ``mcts.variant`` of the run (the baselines' is PUCT)."""
    simulations: int
    baseline_simulations: int
    created_at: str
    players: dict[str, Summary]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


MAX_SEEDS = 1_000_000
"""Games one ``eval`` plays at most: more would take days and their list all the memory."""


def parse_seeds(spec: str | None, games: int) -> list[int]:
    """``"A:B"`` means seeds A..B-1 (Python range); without a spec, seeds 0..games-1."""
    if spec is None:
        start, stop, given = 0, games, f"--games {games}"
    else:
        first, sep, last = spec.partition(":")
        given = f"--seeds {shown(spec)!r}"
        # Python's int() refuses more than 4,300 digits; no seed needs more than 20.
        if not sep or not all(part.strip().isdigit() and len(part) <= 20 for part in (first, last)):
            raise UsageError(f"{given}: expected A:B with integers 0 <= A < B, e.g. 0:100")
        start, stop = int(first), int(last)
        if stop <= start:
            raise UsageError(f"{given}: the range is empty; B must be larger than A")
    if stop - start > MAX_SEEDS:
        raise UsageError(f"{given}: {stop - start} games; play at most {MAX_SEEDS} at once")
    return list(range(start, stop))


def load_network(
    run: RunContext, which: str, warn: Callable[[str], None]
) -> tuple[nn.Module, AlphaTriangleConfig, LoadedCheckpoint]:
    """The run's network with the weights of checkpoint ``which``: "latest", "best" (each the
    newest usable one; ``warn`` names every newer file skipped) or a ``ckpt_*.pt`` file of the
    run. ``UsageError`` when there is none to load."""
    if not run.config_json.is_file():
        raise UsageError(f"run {run.run_name!r} does not exist (no {run.config_json})")
    cfg = AlphaTriangleConfig.from_file(run.config_json)
    model = build_model(cfg)
    shapes = weight_shapes(model)
    explicit = which not in ("latest", "best")
    try:
        ckpt = read_checkpoint(
            run.checkpoint_dir,
            Path(which) if explicit else which,
            lambda state: weights_problem(state.get("model"), shapes),
        )
    except CheckpointError as err:
        raise UsageError(f"--checkpoint {shown(which)}: {err}") from None
    except OSError as err:  # a name the system refuses (too long), a file in the way
        raise UsageError(f"--checkpoint {shown(which)}: {err.strerror}") from None
    for line in ckpt.warnings:
        warn(line)
    model.load_state_dict(ckpt.state["model"])
    model.eval()
    return model, cfg, ckpt


def report(
    run: RunContext,
    ckpt: LoadedCheckpoint,
    seeds: Sequence[int],
    search: str,
    simulations: int,
    baseline_simulations: int,
    players: dict[str, Summary],
) -> EvalReport:
    return EvalReport(
        run_name=run.run_name,
        checkpoint=str(ckpt.path),
        step=ckpt.step,
        seeds=list(seeds),
        search=search,
        simulations=simulations,
        baseline_simulations=baseline_simulations,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        players=players,
    )


def report_path(run: RunContext, rep: EvalReport) -> Path:
    """Where a report is written: one file per checkpoint step and seed range."""
    seeds = f"{rep.seeds[0]}-{rep.seeds[-1]}"
    return run.eval_dir / f"eval_step{rep.step:09d}_seeds{seeds}_sims{rep.simulations}.json"


EVAL_TABLE = "eval_table.json"
"""The artifact of an evaluation's MLflow run that holds its table (MLflow's table format)."""
STATISTICS = ("mean", "median", "std", "max", "mean_length")
"""Each player's statistics logged as ``eval_cli/<player>/<statistic>``."""


def eval_run_name(rep: EvalReport) -> str:
    """The name of an evaluation's MLflow run: the checkpoint's step and the settings."""
    seeds = f"{rep.seeds[0]}:{rep.seeds[-1] + 1}"
    return f"eval step {rep.step}, {rep.search} {rep.simulations} sims, seeds {seeds}"


def eval_description(rep: EvalReport) -> str:
    """An evaluation in one line, the note of its MLflow run."""
    seeds = f"{rep.seeds[0]}:{rep.seeds[-1] + 1}"
    return (
        f"{Path(rep.checkpoint).name} of {rep.run_name} (step {rep.step}) on seeds {seeds} "
        f"({len(rep.seeds)} games): {rep.search} search, {rep.simulations} simulations; "
        f"players {', '.join(rep.players)}"
    )


def eval_params(rep: EvalReport, path: Path) -> dict[str, str]:
    """An evaluation's settings, as the params of its MLflow run."""
    return {
        "checkpoint": Path(rep.checkpoint).name,
        "step": str(rep.step),
        "seeds": f"{rep.seeds[0]}:{rep.seeds[-1] + 1}",
        "games": str(len(rep.seeds)),
        "search": rep.search,
        "simulations": str(rep.simulations),
        "baseline_simulations": str(rep.baseline_simulations),
        "players": ",".join(rep.players),
        "report": path.name,
    }


def log_to_mlflow(run: RunContext, rep: EvalReport, path: Path, tags: Mapping[str, str]) -> str:
    """Log a report as an MLflow run of its own, nested under the run's (tag
    ``mlflow.parentRunId``), so that evaluations of one checkpoint with other settings never
    share a chart point: its settings as params, each player's statistics as
    ``eval_cli/<player>/<statistic>`` at the checkpoint's step, the table as ``EVAL_TABLE`` and
    the JSON report under ``evals/``; ``tags`` say where it came from. Returns the nested run's
    id. Only for when no trainer holds the run (MLflow has one writer)."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    record = read_run(run)
    if record is None:
        raise UsageError(f"run {run.run_name!r} has no {run.run_json}: it never started")
    client = MlflowClient(tracking_uri=run.mlflow_tracking_uri)
    child = client.create_run(
        record.mlflow_experiment_id,
        run_name=eval_run_name(rep),
        tags={MLFLOW_PARENT_RUN_ID: record.mlflow_run_id, **tags},
    )
    run_id: str = child.info.run_id
    now = int(datetime.now(UTC).timestamp() * 1000)
    step = max(rep.step, 0)
    metrics = [
        Metric(f"{EVAL_CLI_PREFIX}/{s.player}/{field}", float(getattr(s, field)), now, step)
        for s in rep.players.values()
        for field in STATISTICS
    ]
    params = [Param(key, value) for key, value in eval_params(rep, path).items()]
    client.log_batch(run_id, metrics=metrics, params=params)
    client.log_table(run_id, data=table(rep), artifact_file=EVAL_TABLE)
    client.log_artifact(run_id, str(path), "evals")
    client.set_terminated(run_id, "FINISHED")
    return run_id


def table(rep: EvalReport) -> dict[str, list[object]]:
    """The report's table, one row per player, as columns (what ``eval`` prints)."""
    players = list(rep.players.values())
    return {
        "player": [s.player for s in players],
        "games": [s.games for s in players],
        "mean": [s.mean for s in players],
        "median": [s.median for s in players],
        "sd": [s.std for s in players],
        "max": [s.max for s in players],
        "mean length": [s.mean_length for s in players],
        "max length": [s.max_length for s in players],
    }
