"""Faults and bad input with real processes: nothing saved is lost, errors are one clear line."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow.exceptions import MlflowException

from alphatriangle.distributed.run import run_context
from tests.cli import (
    assert_mlflow_clean,
    manifest_steps,
    metric_steps,
    ok,
    run_cli,
    start_cli,
    tiny_config,
    train_args,
    wait_for,
)
from tests.conftest import TINY, TRAINED, copy_trained


def _descendants(root: int) -> dict[int, str]:
    """Live processes below ``root`` (pid -> command line), read from /proc."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        for child, ppid in parent.items():
            if ppid == pid and child not in found:
                try:
                    cmdline = (Path("/proc") / str(child) / "cmdline").read_bytes()
                except OSError:
                    continue
                found[child] = cmdline.replace(b"\0", b" ").decode(errors="replace")
                frontier.append(child)
    return found


def _kill_all(pids: object) -> None:
    for pid in pids:  # type: ignore[attr-defined]
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def test_kill_9_of_the_driver_then_restart_resumes_from_the_last_complete_checkpoint(
    workdir: Path,
) -> None:
    proc = start_cli(workdir, *train_args("--run-name", "k9"))
    ctx = run_context("k9", workdir / "data")
    wait_for(lambda: len(manifest_steps(ctx.checkpoint_dir)) >= 2, proc)
    # Checkpoints every 2 steps: a random instant often falls inside a write.
    time.sleep(random.uniform(0.0, 2.0))
    ray_processes = _descendants(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.finish(timeout=30)
    # A driver killed with SIGKILL leaves some of its Ray helper processes behind.
    _kill_all(ray_processes)
    # It recorded RUNNING and never got to say otherwise; `runs` checks the lock.
    assert re.search(r"k9 +│ DIED", run_cli(workdir, "runs").stdout)

    steps = manifest_steps(ctx.checkpoint_dir)
    newest = steps[-1]
    buffer_steps = [s for s in manifest_steps(ctx.buffer_dir) if s <= newest]
    with np.load(ctx.buffer_dir / f"buffer_{buffer_steps[-1]:012d}.npz") as data:
        saved_size = int(data["size"])
    out = ok(run_cli(workdir, *train_args("--run-name", "k9", "--max-steps", str(newest + 2))))
    match = re.search(r"resumed 'k9' at step (\d+) from .* \(buffer (\d+) positions", out)
    assert match, out
    assert int(match.group(1)) == newest
    assert int(match.group(2)) == saved_size
    assert_mlflow_clean(workdir, "k9")


def test_a_killed_self_play_worker_is_replaced_and_training_goes_on(workdir: Path) -> None:
    proc = start_cli(workdir, *train_args("--run-name", "wk"))
    ctx = run_context("wk", workdir / "data")
    wait_for(lambda: len(manifest_steps(ctx.checkpoint_dir)) >= 1, proc)
    pids = [pid for pid, cmd in _descendants(proc.pid).items() if "ray::SelfPlayWorker" in cmd]
    assert pids, _descendants(proc.pid)
    os.kill(int(pids[0]), signal.SIGKILL)
    proc.wait_output("starting a replacement")
    killed_at = manifest_steps(ctx.checkpoint_dir)[-1]
    # The replay ratio lets the learner step only on new positions, and the only worker is the
    # replacement: steps going on means it plays.
    wait_for(lambda: manifest_steps(ctx.checkpoint_dir)[-1] >= killed_at + 6, proc)
    proc.send_signal(signal.SIGINT)
    out = proc.finish()
    assert proc.returncode == 0, out
    assert re.search(r"stopped 'wk' at step \d+", out), out
    assert_mlflow_clean(workdir, "wk")


def test_a_killed_evaluation_worker_is_restarted_and_its_evaluation_redone(
    workdir: Path,
) -> None:
    (workdir / "tiny.toml").write_text(
        tiny_config(
            train={"checkpoint_every_steps": 2, "buffer_save_every_steps": 2},
            eval={"every_steps": 2, "simulations": 32},
        )
    )
    proc = start_cli(workdir, *train_args("--run-name", "ek"))

    def evaluating() -> list[int]:
        # Ray titles an actor's process ``ray::Class.method`` while the method runs.
        tree = _descendants(proc.pid)
        return [pid for pid, cmd in tree.items() if "ray::EvalActor.evaluate" in cmd]

    # The first evaluation (of step 2) takes seconds: this kill lands inside it.
    wait_for(evaluating, proc)
    os.kill(evaluating()[0], signal.SIGKILL)
    wait_for(lambda: _logged_steps(workdir, "ek", "eval/score_mean"), proc)
    proc.send_signal(signal.SIGINT)
    out = proc.finish()
    assert proc.returncode == 0, out
    assert not re.search(r"evaluation of step \d+ failed", out), out
    steps = metric_steps(workdir, "ek", "eval/score_mean")
    assert steps[0] == 2, (steps, out)


def _logged_steps(workdir: Path, name: str, metric: str) -> list[int]:
    """``metric_steps`` of a run that may not have written its first points yet."""
    try:
        return metric_steps(workdir, name, metric)
    except (FileNotFoundError, MlflowException):
        return []


def test_a_sidecar_dead_for_good_ends_the_run_with_one_line_and_it_resumes(
    workdir: Path,
) -> None:
    proc = start_cli(workdir, *train_args("--run-name", "sd"))
    ctx = run_context("sd", workdir / "data")
    wait_for(lambda: len(manifest_steps(ctx.checkpoint_dir)) >= 1, proc)

    def sidecar() -> list[int]:
        return [p for p, cmd in _descendants(proc.pid).items() if "ray::TrieyeActor" in cmd]

    killed: list[int] = []
    # Ray restarts it three times (trieye's default max_restarts); the fourth death is final.
    for _ in range(4):
        wait_for(lambda: [p for p in sidecar() if p not in killed], proc)
        pid = next(p for p in sidecar() if p not in killed)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
    out = proc.finish()
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    assert re.search(r"error: the trieye actor .* died and will not be restarted", out), out
    assert f"the same command resumes from the newest checkpoint in {ctx.checkpoint_dir}" in out
    newest = manifest_steps(ctx.checkpoint_dir)[-1]
    out = ok(run_cli(workdir, *train_args("--run-name", "sd", "--max-steps", str(newest + 2))))
    assert f"resumed 'sd' at step {newest} from" in out
    assert_mlflow_clean(workdir, "sd")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_truncated_newest_buffer_or_checkpoint_falls_back_with_a_warning(
    workdir: Path, trained_run: Path
) -> None:
    copy_trained(trained_run, workdir)
    base = train_args("--run-name", TRAINED)
    ctx = run_context(TRAINED, workdir / "data")

    newest_buf = sorted(ctx.buffer_dir.glob("*.npz"))[-1]
    _truncate(newest_buf)
    older_buf = manifest_steps(ctx.buffer_dir)[-2]
    result = run_cli(workdir, *base, "--max-steps", "6")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"resumed '{TRAINED}' at step 4 from" in result.stdout
    assert f"positions from step {older_buf})" in result.stdout
    assert f"warning: buffer snapshot {newest_buf} is unusable" in result.stdout

    newest_ckpt = sorted(ctx.checkpoint_dir.glob("*.pt"))[-1]
    _truncate(newest_ckpt)
    previous = manifest_steps(ctx.checkpoint_dir)[-2]
    result = run_cli(workdir, *base, "--max-steps", "8")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"resumed '{TRAINED}' at step {previous} from" in result.stdout
    assert f"warning: checkpoint {newest_ckpt} is unusable" in result.stdout
    assert_mlflow_clean(workdir, TRAINED)


def _snapshot(root: Path) -> dict[str, tuple[int, float]]:
    """Size and time of every file but the run lock (which a refused trainer takes briefly)."""
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime)
        for p in root.rglob("*")
        if p.is_file() and p.name != ".lock"
    }


@pytest.mark.parametrize(
    ("args", "files", "message"),
    [
        (["--run-name", "../x"], {}, "invalid run name '../x'"),
        (["--run-name", "a/b"], {}, "invalid run name 'a/b'"),
        (["--run-name", ""], {}, "invalid run name ''"),
        (["--run-name", "x" * 200], {}, "invalid run name"),
        (
            ["--config", "c.toml"],
            {"c.toml": "[train]\nbatch_sise = 3\n"},
            "train.batch_sise: unknown field",
        ),
        (["--config", "c.toml"], {"c.toml": "[mcts]\nsimulations = 0\n"}, "mcts.simulations"),
        (["--config", "c.toml"], {"c.toml": "[train\nx=1"}, "invalid TOML"),
        (["--config", "c.json"], {"c.json": "{not json"}, "invalid JSON"),
        (["--config", "c.yaml"], {"c.yaml": "a: 1"}, "use .toml or .json"),
        (["--config", "missing.toml"], {}, "does not exist"),
        (
            ["--run-name", TRAINED, "--config", "big.toml"],
            {"big.toml": "[model]\nchannels = 48\n"},
            "use a new --run-name",
        ),
        # Non-finite numbers, one field of each family, in TOML and in JSON.
        (
            ["--config", "c.toml"],
            {"c.toml": "[model]\nvalue_scale = inf\n"},
            "model.value_scale: Input should be a finite number",
        ),
        (
            ["--config", "c.toml"],
            {"c.toml": "[mcts]\ncpuct = inf\n"},
            "mcts.cpuct: Input should be a finite number",
        ),
        (
            ["--config", "c.toml"],
            {"c.toml": "[mcts]\ntemperature = nan\n"},
            "mcts.temperature: Input should be a finite number",
        ),
        (
            ["--config", "c.toml"],
            {"c.toml": "[train]\nlearning_rate = nan\n"},
            "train.learning_rate: Input should be a finite number",
        ),
        (
            ["--config", "c.toml"],
            {"c.toml": "[train]\nreplay_ratio = inf\n"},
            "train.replay_ratio: Input should be a finite number",
        ),
        (
            ["--config", "c.json"],
            {"c.json": '{"train": {"value_loss_weight": Infinity}}'},
            "train.value_loss_weight: Input should be a finite number",
        ),
        (
            ["--config", "c.json"],
            {"c.json": '{"mcts": {"dirichlet_alpha": NaN}}'},
            "mcts.dirichlet_alpha: Input should be a finite number",
        ),
        # Sizes that cannot be allocated, files that are not config files, a new run included.
        (
            ["--config", "c.toml"],
            {"c.toml": "[train]\nbuffer_capacity = 9223372036854775807\n"},
            "train.buffer_capacity: Input should be less than or equal to",
        ),
        (
            ["--run-name", "fresh", "--config", "c.toml"],
            {"c.toml": "[train]\nbuffer_capacity = 900000000\n"},
            "GiB of memory; lower it",
        ),
        (
            ["--config", "c.toml"],
            {"c.toml": b"\xff\xfe[train]\x00"},
            "c.toml: not a UTF-8 text file",
        ),
        (["--config", "confs"], {"confs/": ""}, "confs is a directory"),
        (["--run-name", "fresh", "--workers", "10000"], {}, "use at most"),
        (["--max-steps", "0"], {}, "Invalid value for '--max-steps'"),
    ],
)
def test_bad_input_is_refused_with_one_line_and_changes_nothing(
    existing_run: Path, args: list[str], files: dict[str, str | bytes], message: str
) -> None:
    for name, content in files.items():
        if name.endswith("/"):
            (existing_run / name).mkdir(exist_ok=True)
        elif isinstance(content, bytes):
            (existing_run / name).write_bytes(content)
        else:
            (existing_run / name).write_text(content)
    before = _snapshot(existing_run / "data")
    result = run_cli(existing_run, "train", "--max-steps", "1", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert _snapshot(existing_run / "data") == before
    assert not run_context("fresh", existing_run / "data").run_dir.exists()


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory: pytest.TempPathFactory, trained_run: Path) -> Path:
    """A copy of the finished run ``TRAINED``, to check that bad input leaves it alone."""
    workdir = tmp_path_factory.mktemp("badinput")
    (workdir / "tiny.toml").write_text(TINY)
    copy_trained(trained_run, workdir)
    return workdir


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr to make a dir read-only")
def test_disk_errors_while_saving_are_reported_and_retried(workdir: Path) -> None:
    proc = start_cli(workdir, *train_args("--run-name", "ro"))
    ctx = run_context("ro", workdir / "data")
    wait_for(lambda: len(manifest_steps(ctx.checkpoint_dir)) >= 1, proc)
    # Root ignores permission bits; the immutable flag makes the directory really read-only.
    subprocess.run(["chattr", "+i", str(ctx.checkpoint_dir)], check=True)
    try:
        blocked_at = manifest_steps(ctx.checkpoint_dir)[-1]
        proc.wait_output("checkpoint save failed")
    finally:
        subprocess.run(["chattr", "-i", str(ctx.checkpoint_dir)], check=True)
    # Saved again once the directory came back, while training went on.
    wait_for(lambda: manifest_steps(ctx.checkpoint_dir)[-1] > blocked_at + 2, proc)
    proc.send_signal(signal.SIGINT)
    out = proc.finish()
    assert proc.returncode == 0, out
    final = re.search(r"stopped 'ro' at step (\d+)", out)
    assert final, out
    assert manifest_steps(ctx.checkpoint_dir)[-1] == int(final.group(1))
