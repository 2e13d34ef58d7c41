"""The alphatriangle command line."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.exceptions import TyperException

from alphatriangle import stopping
from alphatriangle.errors import ECHO_LIMIT, LINE_LIMIT, RunStoppedError, UsageError, shown
from alphatriangle.metric_names import EPISODE_SCORE, EVAL_SCORE_MEAN

app = typer.Typer(add_completion=False, no_args_is_help=True)
# No markup: what it prints holds paths, names and messages that may contain "[...]".
console = Console(markup=False)

DataDir = Annotated[
    Path,
    typer.Option(
        envvar="ALPHATRIANGLE_DATA",
        help="Root of all run data (MLflow store, checkpoints, TensorBoard events).",
    ),
]
DEFAULT_DATA = Path(".alphatriangle_data")
TYPER_INTERRUPTED = 130
"""The exit code typer returns for a command that a ``KeyboardInterrupt`` ended."""


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """The process boundary. Bad input (``UsageError``, exit 2) and a run stopped for a reason
    the user can act on (``RunStoppedError``, exit 1) become one line; anything else is a bug
    and keeps its traceback."""
    try:
        yield
    except (UsageError, RunStoppedError) as err:
        lines = [line.strip() for line in re.sub(r":\n\s*", ": ", str(err)).splitlines()]
        # Each piece of input a message echoes is cut where it is formatted (``shown``); this
        # bounds what the libraries it quotes add.
        message = shown("; ".join(line for line in lines if line), LINE_LIMIT)
        _error(message)
        raise typer.Exit(code=2 if isinstance(err, UsageError) else 1) from None


def main() -> None:
    """The ``alphatriangle`` console script: option-parser errors read as one line too, and
    SIGTERM means what Ctrl-C means from the first instant (see ``alphatriangle.stopping``)."""
    stopping.install()
    try:
        code = app(standalone_mode=False)
    except TyperException as err:
        # typer's (vendored) click errors: bad option values, unknown or missing options.
        format_message = getattr(err, "format_message", None)
        if format_message is None:
            raise
        ctx = getattr(err, "ctx", None)
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        # A short sentence around the argument it may echo, which can be of any length.
        message = shown(format_message(), 2 * ECHO_LIMIT)
        _error(f"{message}{where}")
        code = getattr(err, "exit_code", 2)
    except typer.Abort:  # EOF at a prompt
        code = 130
    except KeyboardInterrupt:  # while typer builds the command, before it catches that itself
        code = TYPER_INTERRUPTED
    signal_name = stopping.received()
    if code == TYPER_INTERRUPTED and signal_name is not None:
        code = _interrupted(signal_name)
    sys.exit(code if isinstance(code, int) else 0)


def _interrupted(signal_name: str) -> int:
    """Report a stop by SIGINT or SIGTERM that unwound the command; its exit code."""
    # From argv: the signal may have come before typer had parsed which command it runs.
    if sys.argv[1:2] == ["train"]:
        # Only before the run changed anything (see driver.train): a stop as requested.
        console.print(
            f"{signal_name}: stopped before training started; the run is as it was",
            highlight=False,
        )
        return 0
    # eval and play write what they write once they have finished: an interrupted one did not.
    console.print(f"{signal_name}: stopped before finishing", highlight=False)
    return stopping.INTERRUPTED_EXIT_CODE


@app.callback()
def _app() -> None:
    """AlphaZero- and MuZero-style self-play training for the trianglengin puzzle."""


@app.command()
def train(
    run_name: Annotated[
        str | None, typer.Option(help="Name of the run; an existing run is resumed.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML or JSON file with model/mcts/train settings.")
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many gradient steps in total.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Self-play workers (default: enough to keep every CPU busy)."),
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster to join: 'auto' or host:port.")
    ] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Seed of a new run.")] = None,
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Train (or resume) a run: self-play workers, learner and the trieye sidecar."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with _one_line_errors():
        if address:
            _use_cluster_token()
        from alphatriangle.app.provenance import describe, source_tags
        from alphatriangle.app.runs import DATA_DIR_OPTION, check_path, resolve_config, run_context
        from alphatriangle.distributed.workers import worker_count

        name = datetime.now().strftime("run-%Y%m%d-%H%M%S") if run_name is None else run_name
        run = run_context(name, data_dir)
        check_path(run.run_dir, DATA_DIR_OPTION, writable=True)
        cfg = resolve_config(run, config, max_steps=max_steps, workers=workers, seed=seed)
        if not address:  # the local cluster gets this machine's CPUs: refuse before it starts
            worker_count(cfg.train, os.cpu_count() or 1)
        # Ray and torch only once the input is known to be good: bad input fails in a second.
        from alphatriangle.app.progress import ProgressView
        from alphatriangle.distributed.driver import train as run_training

        view = ProgressView(console)
        started = False

        def say(message: str) -> None:
            nonlocal started
            if not started:  # the run has started: nothing left to refuse
                started = True
                _print_ui_commands(run)
            view.say(message)

        tags = source_tags(sys.argv, describe(cfg))
        with view:
            result = run_training(
                cfg, run, address=address, on_start=say, on_progress=view.show, tags=tags
            )
    how = "stopped" if result.stopped_by_signal else "finished"
    console.print(
        f"{how} {run.run_name!r} at step {result.final_step} "
        f"(started at {result.start_step}); checkpoint {result.checkpoint}\n"
        f"throughput while training: self-play {result.moves_per_s:.1f} moves/s, "
        f"learner {result.samples_per_s:.0f} samples/s",
        highlight=False,
        soft_wrap=True,
    )
    _print_ui_commands(run)


@app.command()
def runs(data_dir: DataDir = DEFAULT_DATA) -> None:
    """List runs with their status, last step, best scores and last update."""
    from alphatriangle.app.runs import app_context
    from trieye import InvalidRunName, RunRecordError, read_run

    with _one_line_errors():
        app_ctx = app_context(data_dir)
    root = app_ctx.runs_dir
    found = sorted(p.parent.name for p in root.glob("*/run.json")) if root.is_dir() else []
    if not found:
        console.print(f"no runs under {root}", highlight=False, soft_wrap=True)
        return
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=app_ctx.mlflow_tracking_uri)
    # Narrow enough for 80 columns with a default run name and a live trainer's pid: headers
    # on two lines, no outer border, the update as an age.
    table = Table(box=box.MINIMAL, show_edge=False, pad_edge=False)
    for header in ("run", "status", "last\nstep", "best\neval", "best\nself-play", "updated"):
        table.add_column(header)
    now = datetime.now(UTC)
    for name in found:
        try:
            ctx = app_ctx.run(name)
            record = read_run(ctx)
        except (InvalidRunName, RunRecordError) as err:
            table.add_row(name, f"unreadable: {err}", "-", "-", "-", "-")
            continue
        assert record is not None, "found by its run.json"
        best = {
            metric: max(
                (m.value for m in client.get_metric_history(record.mlflow_run_id, metric)),
                default=None,
            )
            for metric in (EVAL_SCORE_MEAN, EPISODE_SCORE)
        }
        last = record.last_checkpoint_step
        table.add_row(
            name,
            _run_status(ctx.run_dir, record.status),
            "-" if last is None else str(last),
            *("-" if v is None else f"{v:.2f}" for v in best.values()),
            _age(now - datetime.fromisoformat(record.updated_at)),
        )
    console.print(table)


def _age(elapsed: timedelta) -> str:
    """``elapsed`` in its largest whole unit: ``42s ago``, ``5m ago``, ``3h ago``, ``12d ago``."""
    seconds = max(0, int(elapsed.total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _run_status(run_dir: Path, recorded: str) -> str:
    """The recorded status, checked against the run lock: a trainer killed by ``kill -9`` or
    the OOM killer never got to record that it stopped."""
    from alphatriangle.distributed.runlock import lock_holder

    holder = lock_holder(run_dir)
    if holder is not None:
        return f"RUNNING (pid {holder})"
    return "DIED" if recorded == "RUNNING" else recorded


@app.command()
def ml(
    port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000,
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Open the MLflow UI on this app's runs."""
    from alphatriangle.app.runs import app_context

    with _one_line_errors():
        app_ctx = app_context(data_dir)
    runs_json = sorted(app_ctx.runs_dir.glob("*/run.json")) if app_ctx.runs_dir.is_dir() else []
    if runs_json:
        experiment = json.loads(runs_json[0].read_text())["mlflow_experiment_id"]
        console.print(
            f"open {mlflow_url(port, experiment)} (MLflow's Model training view)",
            highlight=False,
            soft_wrap=True,
        )
    uri = app_ctx.mlflow_tracking_uri
    _exec([_tool("mlflow"), "ui", "--backend-store-uri", uri, "--port", str(port)])


def mlflow_url(port: int, experiment_id: str, run_id: str | None = None) -> str:
    """The MLflow UI's page of an experiment (or of one of its runs) in its Model training view.

    MLflow 3.17's UI chooses between its GenAI and Model training views with a switch in its
    sidebar, which a new browser starts at GenAI whatever the experiment's
    ``mlflow.experimentKind`` tag says, and which follows the ``workflowType`` of the address.
    """
    page = f"experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"http://127.0.0.1:{port}/#/{page}?workflowType=machine_learning"


@app.command()
def tb(
    port: Annotated[int, typer.Option(help="Port of TensorBoard.")] = 6006,
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Open TensorBoard on this app's runs."""
    from alphatriangle.app.runs import app_context

    with _one_line_errors():
        logdir = app_context(data_dir).runs_dir
    _exec([_tool("tensorboard"), "--logdir", str(logdir), "--port", str(port)])


@app.command("eval")
def eval_(
    run_name: Annotated[str, typer.Option(help="Run whose checkpoint to evaluate.")],
    checkpoint: Annotated[
        str, typer.Option(help="'latest', 'best', or the path of a checkpoint file.")
    ] = "latest",
    games: Annotated[int, typer.Option(min=1, help="Games (seeds 0..N-1) unless --seeds.")] = 20,
    seeds: Annotated[str | None, typer.Option(help="Seed range A:B (A..B-1).")] = None,
    sims: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Simulations per move (default: the run's player count at the checkpoint's "
            "step, `[mcts] play_simulations_at`).",
        ),
    ] = None,
    baseline_sims: Annotated[
        int | None, typer.Option(min=1, help="Simulations of the uniform-MCTS baseline.")
    ] = None,
    baselines: Annotated[bool, typer.Option(help="Also play the built-in baselines.")] = True,
    jobs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Processes that share the games (default: one per CPU, at most one per game); "
            "the results do not depend on it.",
        ),
    ] = None,
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Play fixed seeds with the network and the baselines; print and save the table."""
    with _one_line_errors():
        import torch

        from alphatriangle.app import reports
        from alphatriangle.app.provenance import source_tags
        from alphatriangle.app.runs import run_context
        from alphatriangle.core.evaluation import EvalPlan, default_jobs, evaluate_plan
        from alphatriangle.distributed.runlock import RunLock, RunLockedError

        torch.set_num_threads(1)
        run = run_context(run_name, data_dir)
        seed_list = reports.parse_seeds(seeds, games)
        model, cfg, ckpt = reports.load_network(run, checkpoint, warn=_warn)
        n_sims = sims or cfg.mcts.play_simulations_at(ckpt.step)
        n_base = baseline_sims or n_sims
        console.print(
            f"evaluating {ckpt.path} (step {ckpt.step}) on {len(seed_list)} seeds "
            f"{seed_list[0]}..{seed_list[-1]}, {cfg.mcts.variant} search, {n_sims} simulations",
            highlight=False,
            soft_wrap=True,
        )
        plan = EvalPlan(
            cfg,
            model.state_dict(),
            cfg.mcts.model_copy(update={"simulations": n_sims}),
            n_base,
            baselines,
        )
        # A signal's KeyboardInterrupt can be lost where Python cannot raise it (a callback of
        # the search's C++ or a finalizer); the check between moves raises it again.
        players = evaluate_plan(
            plan, seed_list, jobs or default_jobs(len(seed_list)), stopping.check
        )
        rep = reports.report(run, ckpt, seed_list, cfg.mcts.variant, n_sims, n_base, players)
    table = Table("player", "games", "mean", "median", "sd", "max", "mean length", "max length")
    for summary in players.values():
        table.add_row(
            summary.player,
            str(summary.games),
            f"{summary.mean:.2f}",
            f"{summary.median:.2f}",
            f"{summary.std:.2f}",
            f"{summary.max:.2f}",
            f"{summary.mean_length:.1f}",
            str(summary.max_length),
        )
    console.print(table)
    path = reports.report_path(run, rep)
    from trieye import atomic_write_text

    atomic_write_text(path, rep.to_json())
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)
    try:
        with RunLock(run.run_dir):
            reports.log_to_mlflow(
                run, rep, path, source_tags(sys.argv, reports.eval_description(rep))
            )
        console.print(
            f"logged to MLflow as the run {reports.eval_run_name(rep)!r}, nested under "
            f"{run.run_name!r}",
            highlight=False,
            soft_wrap=True,
        )
    except RunLockedError:
        console.print("the run is training now, so MLflow logging was skipped (one writer per run)")


@app.command()
def play(
    run_name: Annotated[str, typer.Option(help="Run whose agent plays.")],
    seed: Annotated[int, typer.Option(min=0, help="Game seed.")] = 0,
    checkpoint: Annotated[
        str, typer.Option(help="'latest', 'best', or the path of a checkpoint file.")
    ] = "latest",
    sims: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Simulations per move (default: the run's player count at the checkpoint's "
            "step, `[mcts] play_simulations_at`).",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Also render the game: game.gif, frames.png or game.txt.")
    ] = None,
    delay: Annotated[float, typer.Option(min=0, help="Seconds between moves on screen.")] = 0.0,
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Watch the agent play one game, move by move; optionally save it as GIF/PNG/text."""
    with _one_line_errors():
        import torch
        from trianglengin import GameState

        from alphatriangle.app import render, reports
        from alphatriangle.app.runs import check_path, run_context
        from alphatriangle.core.algorithm import agent_player

        if out is not None:  # checked before the game: it is written after it
            if out.suffix.lower() not in (".gif", ".png", ".txt"):
                raise UsageError(f"--out {shown(out)}: use a .gif, .png or .txt file name")
            if out.suffix.lower() == ".png":  # numbered files next to the name
                check_path(out.parent, "--out", writable=True)
            else:
                check_path(out, "--out", file=True, writable=True)
        torch.set_num_threads(1)
        run = run_context(run_name, data_dir)
        model, cfg, ckpt = reports.load_network(run, checkpoint, warn=_warn)
    mcts = cfg.mcts.model_copy(
        update={"simulations": sims or cfg.mcts.play_simulations_at(ckpt.step)}
    )
    player = agent_player(model, cfg, mcts)
    player.reset(seed)
    state = GameState(initial_seed=seed)
    texts = [render.board_text(state)]
    images = [render.board_image(state)] if out is not None and out.suffix != ".txt" else []
    console.print(
        f"{run_name} step {ckpt.step}, seed {seed}, {mcts.variant} search, "
        f"{mcts.simulations} simulations\n{texts[0]}\n",
        highlight=False,
    )
    while not state.is_over():
        stopping.check()  # as in eval: a signal whose KeyboardInterrupt was lost
        action = player.choose(state)
        state.step(action)
        texts.append(render.board_text(state))
        if images:
            images.append(render.board_image(state))
        console.print(f"move {state.current_step}: action {action}\n{texts[-1]}\n", highlight=False)
        time.sleep(delay)
    console.print(f"game over: score {state.game_score():.2f} in {state.current_step} moves")
    if out is not None:
        if out.suffix.lower() == ".txt":
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("\n\n".join(texts) + "\n")
            written = [out]
        else:
            written = render.save_frames(images, out)
        console.print(
            f"wrote {len(texts)} frames to {written[0]}" + (" ..." if len(written) > 1 else "")
        )


def _error(message: str) -> None:
    console.print(Text.assemble(("error:", "red"), " ", message), soft_wrap=True)


def _warn(message: str) -> None:
    console.print(f"warning: {message}", highlight=False, soft_wrap=True)


@app.command()
def doctor(
    seed: Annotated[int, typer.Option(help="Game seed of the check episode.")] = 0,
    sims: Annotated[int, typer.Option(min=1, help="MCTS simulations per move.")] = 32,
) -> None:
    """Check the engine and MCTS work: play one game with a uniform-prior search."""
    from trianglengin import GameState

    from alphatriangle.core.players import uniform_mcts_player

    # The installed distributions' versions: the modules' own __version__ says "dev" when
    # built from source, as scripts/install.py builds both.
    for engine in ("trianglengin", "trimcts"):
        console.print(f"{engine} {version(engine)}", highlight=False, soft_wrap=True)
    state = GameState(initial_seed=seed)
    player = uniform_mcts_player(sims)
    player.reset(seed)
    start = time.perf_counter()
    moves = 0
    while not state.is_over():
        try:
            action = player.choose(state)
        except RuntimeError as error:  # trimcts reports a broken build by returning no visits
            _error(f"{error}; run `make install FORCE=1`.")
            raise typer.Exit(code=1) from error
        state.step(action)
        moves += 1
    elapsed = time.perf_counter() - start
    console.print(
        f"one game, seed {seed}, {sims} simulations/move: score {state.game_score():.2f}, "
        f"{moves} moves, {moves / elapsed:.0f} moves/s",
        highlight=False,
        soft_wrap=True,
    )


def _use_cluster_token() -> None:
    """Send the cluster's auth token when joining one.

    `ray start` turns token authentication on when ~/.ray/auth_token exists, but a connecting
    driver only sends the token when RAY_AUTH_MODE says so, and Ray reads that setting once,
    when it is first imported: so it is set here, before anything imports ray.
    """
    if "RAY_AUTH_MODE" not in os.environ and (Path.home() / ".ray" / "auth_token").exists():
        os.environ["RAY_AUTH_MODE"] = "token"


def _print_ui_commands(run: Any) -> None:
    from trieye import read_run

    record = read_run(run)
    where = (
        ""
        if record is None
        else f"\n    then open {mlflow_url(5000, record.mlflow_experiment_id, record.mlflow_run_id)}"
    )
    console.print(
        "watch it with:\n"
        f"  mlflow ui --backend-store-uri {run.mlflow_tracking_uri}{where}\n"
        f"  tensorboard --logdir {run.tensorboard_root}",
        highlight=False,
        soft_wrap=True,
    )


def _tool(name: str) -> str:
    """A console script of this environment, even when the venv is not activated."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise typer.BadParameter(f"{name} is not installed in this environment")
    return found


def _exec(cmd: list[str]) -> None:
    console.print(" ".join(cmd), highlight=False, soft_wrap=True)
    raise typer.Exit(code=subprocess.call(cmd))
