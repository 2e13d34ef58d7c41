"""Ctrl-C and SIGTERM sent to the real ``alphatriangle train``, at each moment of a run's life:
before Ray starts, while it starts, while training, and twice."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from alphatriangle.app.runs import run_context
from alphatriangle.distributed.runlock import lock_holder
from tests.cli import (
    manifest_steps,
    ok,
    printed_lines,
    run_cli,
    start_cli,
    tiny_config,
    train_args,
    wait_for,
)
from tests.conftest import TRAINED, copy_trained

STOPPED_BEFORE_START = "stopped before training started; the run is as it was"


def test_sigterm_while_training_saves_a_final_checkpoint_and_the_run_resumes_there(
    workdir: Path,
) -> None:
    proc = start_cli(workdir, *train_args("--run-name", "term"))
    proc.wait_output("first gradient step")
    proc.send_signal(signal.SIGTERM)
    out = proc.finish()
    assert proc.returncode == 0, out
    assert "SIGTERM: stopping, saving a final checkpoint" in out
    assert "SIGTERM received" not in out, "Ray's native crash handler took the signal"
    assert "Traceback" not in out
    final = re.search(r"stopped 'term' at step (\d+)", out)
    assert final, out
    step = int(final.group(1))
    ctx = run_context("term", workdir / "data")
    assert manifest_steps(ctx.checkpoint_dir)[-1] == step
    assert manifest_steps(ctx.buffer_dir)[-1] == step
    record = json.loads(ctx.run_json.read_text())
    assert (record["status"], record["end_reason"]) == ("STOPPED", "stopped by SIGTERM")
    mlrun = MlflowClient(ctx.mlflow_tracking_uri).get_run(record["mlflow_run_id"])
    assert (mlrun.info.status, mlrun.data.tags["trieye.end_reason"]) == (
        "FINISHED",
        "stopped by SIGTERM",
    )
    assert re.search(rf"term +│ STOPPED +│ {step} ", ok(run_cli(workdir, "runs")))

    again = ok(run_cli(workdir, *train_args("--run-name", "term", "--max-steps", str(step + 2))))
    assert f"resumed 'term' at step {step} from {ctx.checkpoint_dir}" in again


def test_sigterm_while_a_finished_run_waits_for_its_evaluation_skips_the_wait(
    workdir: Path,
) -> None:
    # An evaluation of the last step slow enough to be still running when the run ends.
    slow = tiny_config(eval={"every_steps": 4, "games": 50, "simulations": 64})
    (workdir / "slow_eval.toml").write_text(slow)
    args = ["--config", "slow_eval.toml", "--workers", "1", "--run-name", "end", "--max-steps", "4"]
    proc = start_cli(workdir, "train", *args)
    proc.wait_output("waiting for the evaluation of step 4")
    proc.send_signal(signal.SIGTERM)
    out = proc.finish()
    assert proc.returncode == 0, out
    assert "finished 'end' at step 4" in out
    ctx = run_context("end", workdir / "data")
    assert manifest_steps(ctx.checkpoint_dir)[-1] == 4
    assert json.loads(ctx.run_json.read_text())["status"] == "FINISHED"


def test_a_second_signal_quits_at_once(workdir: Path) -> None:
    proc = start_cli(workdir, *train_args("--run-name", "twice"))
    proc.wait_output("first gradient step")
    # Back to back: whichever Python handles first asks to stop, the other quits.
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGINT)
    out = proc.finish()
    assert proc.returncode == 130, out
    first = re.search(r"(SIGINT|SIGTERM): stopping, saving a final checkpoint", out)
    assert first, out
    second = "SIGTERM" if first.group(1) == "SIGINT" else "SIGINT"
    assert f"{second} again: quitting at once" in out
    assert "stopped 'twice'" not in out


def test_a_signal_at_the_first_instant_stops_before_anything_starts(workdir: Path) -> None:
    # Ray keeps its sessions in $RAY_TMPDIR; a short one (its socket paths must fit 107 bytes).
    ray_tmp = Path(tempfile.mkdtemp(prefix="raytmp"))
    proc = start_cli(workdir, *train_args("--run-name", "early"), env={"RAY_TMPDIR": str(ray_tmp)})
    proc.wait_catching(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    out = proc.finish()
    assert proc.returncode == 0, out
    assert [line.strip() for line in out.splitlines() if line.strip()] == [
        f"SIGTERM: {STOPPED_BEFORE_START}"
    ]
    assert not run_context("early", workdir / "data").run_dir.exists()
    assert list(ray_tmp.iterdir()) == [], "Ray was started"
    ray_tmp.rmdir()


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file but the run lock (the trainer takes it)."""
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and p.name != ".lock"
    }


def _ray_processes(ray_tmp: Path) -> list[str]:
    """The processes of the Ray sessions kept in ``ray_tmp`` (each names its session dir)."""
    found = subprocess.run(["pgrep", "-f", str(ray_tmp)], capture_output=True, text=True)
    return found.stdout.split()


def test_ctrl_c_during_start_up_leaves_a_finished_run_as_it_was(
    workdir: Path, trained_run: Path
) -> None:
    ctx = copy_trained(trained_run, workdir)
    before = _files(ctx.run_dir)
    assert json.loads(ctx.run_json.read_text())["status"] == "FINISHED"
    ray_tmp = Path(tempfile.mkdtemp(prefix="raytmp"))
    env = {"RAY_TMPDIR": str(ray_tmp)}
    proc = start_cli(workdir, *train_args("--run-name", TRAINED, "--max-steps", "8"), env=env)
    # The trainer holds the run: from here on it starts Ray, the sidecar and the learner.
    wait_for(lambda: lock_holder(ctx.run_dir) == str(proc.pid), proc)
    proc.send_signal(signal.SIGINT)
    out = proc.finish()
    assert proc.returncode == 0, out
    assert printed_lines(out) == [f"SIGINT: {STOPPED_BEFORE_START}"], out
    assert _files(ctx.run_dir) == before
    run_id = json.loads(ctx.run_json.read_text())["mlflow_run_id"]
    assert MlflowClient(ctx.mlflow_tracking_uri).get_run(run_id).info.status == "FINISHED"
    assert re.search(rf"{TRAINED} +│ FINISHED +│ 4 ", ok(run_cli(workdir, "runs")))
    # What had started of Ray is gone too (its processes die as the driver goes).
    deadline = time.monotonic() + 60
    while left := _ray_processes(ray_tmp):
        assert time.monotonic() < deadline, f"Ray processes left running: {left}"
        time.sleep(0.2)
    shutil.rmtree(ray_tmp)
