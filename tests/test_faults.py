"""Processes that die (the driver, a worker, the eval actor, the sidecar): nothing saved is lost."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import time
from pathlib import Path

import numpy as np
from mlflow.exceptions import MlflowException

from alphatriangle.app.runs import run_context
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
    # Checkpoints every 2 steps: a random instant often falls inside a write. Pytest shows the
    # printed seed with a failure; FAULTS_SEED=<seed> replays that instant.
    seed = int(os.environ.get("FAULTS_SEED") or random.SystemRandom().randrange(2**32))
    delay = random.Random(seed).uniform(0.0, 2.0)
    print(f"kill -9 {delay:.3f} s after the second checkpoint (FAULTS_SEED={seed})")
    time.sleep(delay)
    ray_processes = _descendants(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.finish()
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
