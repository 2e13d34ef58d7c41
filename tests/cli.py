"""The real ``alphatriangle`` CLI in a subprocess, for the end-to-end test modules."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from mlflow.tracking import MlflowClient

from alphatriangle.app.runs import app_context, run_context

CLI = str(Path(sys.executable).parent / "alphatriangle")

_TINY: dict[str, dict[str, object]] = {
    # The player searches with self-play's count (the default 128 would slow every eval).
    "mcts": {"simulations": 8, "play_simulations": 1},
    "train": {
        "batch_size": 16,
        "min_buffer_size": 32,
        "replay_ratio": 8.0,
        "checkpoint_every_steps": 5,
        "buffer_save_every_steps": 5,
        "weights_publish_every_steps": 3,
    },
    "eval": {"every_steps": 0},
}


def tiny_config(**sections: Mapping[str, object]) -> str:
    """TOML for a network and search small enough to train in seconds; ``sections`` override
    fields, e.g. ``tiny_config(eval={"every_steps": 2})``."""
    lines = []
    for section, fields in _TINY.items():
        lines.append(f"[{section}]")
        merged = {**fields, **sections.get(section, {})}
        lines += [f"{key} = {json.dumps(value)}" for key, value in merged.items()]
    return "\n".join(lines) + "\n"


def cli_env(workdir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # A wide console keeps `runs` table rows on one line.
    env = {**os.environ, "ALPHATRIANGLE_DATA": str(workdir / "data"), "CI": "1", "COLUMNS": "200"}
    return {**env, **(extra or {})}


def train_args(*args: str) -> list[str]:
    """``train`` on ``tiny.toml`` with one self-play worker."""
    return ["train", "--config", "tiny.toml", "--workers", "1", *args]


def run_cli(
    workdir: Path, *args: str, timeout: float | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI run to its end (a hang fails on the test's timeout, which kills the CLI)."""
    return subprocess.run(
        [CLI, *args],
        cwd=workdir,
        env=cli_env(workdir, env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Background:
    """The CLI running in the background; its output (stdout and stderr together) is read as
    it comes, so a test can wait for a line instead of sleeping.

    Each line is also echoed to the test's own stdout: a test that waits for an event which
    never comes fails on its pytest timeout, and pytest then shows what the CLI printed."""

    def __init__(self, workdir: Path, args: tuple[str, ...], env: Mapping[str, str] | None):
        self.proc = subprocess.Popen(
            [CLI, *args],
            cwd=workdir,
            env=cli_env(workdir, env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.append(line)
            sys.stdout.write(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def output(self) -> str:
        return "".join(self._lines)

    def wait_output(self, pattern: str) -> re.Match[str]:
        """The first match of regex ``pattern`` in the output, waited for while it runs."""
        while not (match := re.search(pattern, self.output())):
            assert self.alive(), f"exited before printing {pattern!r}:\n{self.output()}"
            time.sleep(0.1)
        return match

    def finish(self, timeout: float | None = None) -> str:
        """Wait for it to exit (when ``timeout`` is given, failing with what it printed after
        ``timeout`` s; else the test's own timeout ends a hang); all it printed."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"still running after {timeout} s:\n{self.output()}") from None
        self._reader.join(timeout=10)
        return self.output()

    def wait_catching(self, sig: int, seconds: float = 60) -> None:
        """Wait until the process has a handler of its own for ``sig`` (Linux's
        /proc/PID/status lists the signals a process catches)."""
        deadline = time.monotonic() + seconds
        while not _catches(self.pid, sig):
            assert self.alive(), f"exited before catching signal {sig}:\n{self.output()}"
            assert time.monotonic() < deadline, f"signal {sig} never caught:\n{self.output()}"
            time.sleep(0.001)


def _catches(pid: int, sig: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:  # exited: the caller says so
        return False
    caught = re.search(r"^SigCgt:\s*([0-9a-f]+)$", status, re.MULTILINE)
    return caught is not None and bool(int(caught.group(1), 16) >> (sig - 1) & 1)


RAY_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(INFO|WARNING) \S+\.py:\d+ -- ")
"""A line of Ray's own log (``ray.init`` says that it started, or how it authenticates)."""


def printed_lines(output: str) -> list[str]:
    """The non-empty lines of ``output`` that the CLI printed, without Ray's own log lines."""
    return [line for line in output.splitlines() if line.strip() and not RAY_LOG_LINE.match(line)]


_STARTED: list[Background] = []


def start_cli(workdir: Path, *args: str, env: Mapping[str, str] | None = None) -> Background:
    """The CLI running in the background (stopped after the test, see ``stop_started``)."""
    proc = Background(workdir, args, env)
    _STARTED.append(proc)
    return proc


def stop_started() -> None:
    """Stop each CLI a test started and left running (it failed, or timed out waiting): SIGINT,
    so that it shuts its Ray instance down, and SIGKILL if it is still there after a minute."""
    while _STARTED:
        proc = _STARTED.pop().proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def wait_for(predicate: Callable[[], object], proc: Background) -> None:
    """Poll ``predicate`` while ``proc`` lives; fail with its output if it dies first."""
    while not predicate():
        assert proc.alive(), proc.finish()
        time.sleep(0.1)


def manifest_steps(directory: Path) -> list[int]:
    """Steps of the checkpoints or buffers saved in ``directory``, oldest first."""
    return sorted(json.loads(p.read_text())["step"] for p in directory.glob("*.json"))


def metric_steps(workdir: Path, name: str, metric: str) -> list[int]:
    """The steps of ``metric`` in run ``name``'s MLflow history."""
    ctx = run_context(name, workdir / "data")
    client = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
    run_id = json.loads(ctx.run_json.read_text())["mlflow_run_id"]
    return [m.step for m in client.get_metric_history(run_id, metric)]


def assert_mlflow_clean(workdir: Path, name: str, root: Path | None = None) -> None:
    """Exactly one MLflow run for ``name``, and no metric step written twice."""
    ctx = run_context(name, root or workdir / "data")
    client = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(ctx.experiment_name)
    assert experiment is not None
    runs = [r for r in client.search_runs([experiment.experiment_id]) if r.info.run_name == name]
    assert len(runs) == 1
    for metric in runs[0].data.metrics:
        steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, metric)]
        assert steps == sorted(set(steps)), (metric, steps)


def seed_tracking_store(workdir: Path, store: Path) -> None:
    """Put a copy of the empty MLflow store ``store`` where the app's runs in ``workdir`` keep
    theirs, as in a data root that already holds runs: creating one takes MLflow seconds."""
    target = app_context(workdir / "data").mlflow_db
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(store, target)
