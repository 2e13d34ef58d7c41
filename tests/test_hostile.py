"""Hostile run folders, a full disk and a diverging loss, with the real CLI and real files."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from alphatriangle.app.runs import run_context
from tests.cli import (
    assert_mlflow_clean,
    manifest_steps,
    ok,
    run_cli,
    start_cli,
    train_args,
    wait_for,
)
from tests.conftest import TRAINED, copy_trained
from tests.files import (
    code_running_pickle,
    fill_disk,
    forge_checkpoint,
    rewrite_buffer,
    small_disk,
)
from trieye import read_checkpoint


def test_crafted_manifests_make_resume_neither_load_nor_delete_outside_the_run(
    workdir: Path, trained_run: Path
) -> None:
    ctx = copy_trained(trained_run, workdir)
    base = train_args("--run-name", TRAINED)
    victim = workdir / "victim.pt"
    newest = ctx.checkpoint_dir / f"ckpt_{manifest_steps(ctx.checkpoint_dir)[-1]:012d}.pt"
    shutil.copy(newest, victim)  # same bytes: its size and sha256 verify
    manifest = json.loads(newest.with_suffix(".json").read_text())
    outside = os.path.relpath(victim, ctx.checkpoint_dir)
    for step in (0, 999):  # the oldest one is pruned, the newest one is loaded first
        crafted = {**manifest, "step": step, "file": outside}
        (ctx.checkpoint_dir / f"ckpt_{step:012d}.json").write_text(json.dumps(crafted))
    marker = workdir / "code-ran"
    forged = forge_checkpoint(ctx.checkpoint_dir, 998, code_running_pickle(marker))

    out = ok(run_cli(workdir, *base, "--max-steps", "12"))
    assert f"names {outside!r}, which is not a file in {ctx.checkpoint_dir}" in out
    assert f"warning: checkpoint {forged} is unusable (cannot be loaded" in out
    assert f"resumed '{TRAINED}' at step 4 from {newest}" in out
    assert victim.exists(), "pruning deleted a file outside the run"
    assert not marker.exists(), "loading a checkpoint ran code"
    assert not (ctx.checkpoint_dir / "ckpt_000000000000.json").exists()  # pruned: its own name


def test_a_non_finite_loss_stops_the_run_with_one_line_and_saves_no_bad_checkpoint(
    workdir: Path, trained_run: Path
) -> None:
    ctx = copy_trained(trained_run, workdir)
    base = train_args("--run-name", TRAINED)
    # A value target of float32's largest magnitude: the squared error overflows to inf.
    [newest_buffer] = sorted(ctx.buffer_dir.glob("*.npz"))[-1:]
    with np.load(newest_buffer) as archive:
        targets = archive["value_target"]
    rewrite_buffer(newest_buffer, value_target=np.full_like(targets, 3e38))

    result = run_cli(workdir, *base, "--max-steps", "40")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    [error] = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert "error: step 5: non-finite loss" in error
    assert "holds the last finite weights" in error
    for path in ctx.checkpoint_dir.glob("*.pt"):
        weights = read_checkpoint(ctx.checkpoint_dir, path).state["model"]
        assert all(torch.isfinite(t).all() for t in weights.values()), path
    assert manifest_steps(ctx.checkpoint_dir)[-1] == 4


def tensorboard_points(path: Path) -> int:
    """The scalar points in one TensorBoard event file."""
    return sum(len(event.summary.value) for event in EventFileLoader(str(path)).Load())


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "disk", "48m") as mounted:
        yield mounted


def test_a_full_disk_costs_saves_not_the_run(workdir: Path, disk: Path) -> None:
    env_root = disk / "data"
    env = {"ALPHATRIANGLE_DATA": str(env_root)}
    proc = start_cli(workdir, *train_args("--run-name", "full", "--max-steps", "100000"), env=env)
    ctx = run_context("full", env_root)
    wait_for(lambda: len(manifest_steps(ctx.checkpoint_dir)) >= 2, proc)
    filler = fill_disk(disk)
    full_at = manifest_steps(ctx.checkpoint_dir)[-1]
    try:
        # Two refused saves, steps apart: training went on while the disk was full.
        wait_for(lambda: len(re.findall("checkpoint save failed", proc.output())) >= 2, proc)
    finally:
        filler.unlink()
    wait_for(lambda: manifest_steps(ctx.checkpoint_dir)[-1] > full_at + 4, proc)
    proc.send_signal(signal.SIGINT)
    out = proc.finish()
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    # Each refused save names the save queued right after it, the one that tried again.
    retries = re.findall(
        r"checkpoint save failed for step (\d+) .*the next save, at step (\d+), tries again", out
    )
    assert len(retries) >= 2, out
    every = json.loads(ctx.config_json.read_text())["train"]["checkpoint_every_steps"]
    assert [int(retry) - int(failed) for failed, retry in retries] == [every] * len(retries)
    newest = manifest_steps(ctx.checkpoint_dir)[-1]
    resumed = run_cli(
        workdir, *train_args("--run-name", "full", "--max-steps", str(newest + 4)), env=env
    )
    assert f"resumed 'full' at step {newest} from" in ok(resumed)
    assert_mlflow_clean(workdir, "full", root=env_root)
    # A TensorBoard write the disk refused leaves no event file behind: each holds points.
    files = sorted(ctx.tensorboard_dir.glob("events.out.tfevents.*"))
    assert len(files) >= 2, files  # one per session at least
    assert [path for path in files if not tensorboard_points(path)] == []


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr to make a dir read-only")
def test_a_run_whose_every_save_failed_ends_failed_in_one_line_and_is_not_started_over(
    workdir: Path,
) -> None:
    ctx = run_context("nosave", workdir / "data")
    ctx.checkpoint_dir.mkdir(parents=True)
    # Root ignores permission bits; the immutable flag makes the directory really read-only.
    subprocess.run(["chattr", "+i", str(ctx.checkpoint_dir)], check=True)
    try:
        proc = start_cli(workdir, *train_args("--run-name", "nosave"))
        proc.wait_output("checkpoint save failed")
        proc.send_signal(signal.SIGINT)
        out = proc.finish()
    finally:
        subprocess.run(["chattr", "-i", str(ctx.checkpoint_dir)], check=True)
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    lines = out.strip().splitlines()
    # The one line saying so ends the output: nothing from the sidecar's client follows it.
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], out
    assert lines[-1].startswith("error: the final checkpoint (step "), out
    assert manifest_steps(ctx.checkpoint_dir) == []
    # Recorded as failed, not left RUNNING (which `runs` would show as DIED).
    record = json.loads(ctx.run_json.read_text())
    mlflow = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
    run = mlflow.get_run(record["mlflow_run_id"])
    assert (record["status"], run.info.status) == ("FAILED", "FAILED")
    # Why, in one line: the save that failed, and the error's type and first line.
    assert run.data.tags["trieye.end_reason"] == record["end_reason"], record
    assert re.fullmatch(
        r"failed: the final checkpoint \(step \d+\) could not be written: \w+Error: .+",
        record["end_reason"],
    ), record
    assert re.search(r"nosave +│ FAILED", run_cli(workdir, "runs").stdout)

    again = run_cli(workdir, *train_args("--run-name", "nosave", "--max-steps", "4"))
    assert again.returncode == 2, again.stdout + again.stderr
    assert again.stdout.splitlines() == [
        "error: run 'nosave' has no checkpoint to resume from (every save failed, or it "
        f"stopped before its first), although {ctx.run_dir} and its MLflow run exist; use a "
        "new --run-name"
    ]
    assert json.loads(ctx.run_json.read_text()) == record  # its record is left as it was


INJECT = """
import sys
if sys.argv[0].endswith("alphatriangle"):
    from alphatriangle.core.learner import Learner
    real_step = Learner.step

    def step(self, batch):
        if self.counters.step == 3:
            raise ValueError("injected: a shape bug in the learner")
        return real_step(self, batch)

    Learner.step = step
"""


def test_a_bug_during_training_keeps_its_traceback_and_still_saves(workdir: Path) -> None:
    # The real CLI with a fault injected at start-up (sitecustomize): production code is as is.
    (workdir / "inject").mkdir()
    (workdir / "inject" / "sitecustomize.py").write_text(INJECT)
    env = {"PYTHONPATH": str(workdir / "inject")}
    result = run_cli(workdir, *train_args("--run-name", "bug", "--max-steps", "50"), env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" in output
    assert "ValueError: injected: a shape bug in the learner" in output
    assert "error: injected" not in output  # not reported as bad input
    ctx = run_context("bug", workdir / "data")
    assert manifest_steps(ctx.checkpoint_dir)[-1] == 3  # the final save of the last step
