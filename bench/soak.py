"""Soak test (opt-in): train for a long time, kill self-play workers, watch memory stay bounded.

Run: ``.venv/bin/python bench/soak.py [--minutes 30] [--kill-every 5]``. Starts ``alphatriangle
train`` on its defaults in a temporary data directory and, every ``--kill-every`` minutes,
SIGKILLs one of its ``ray::SelfPlayWorker`` processes (the driver must replace it). Every
``--sample-every`` seconds it prints one row: the driver's step and buffer size (from its progress
line), the last step the sidecar has written to run.json (a sidecar falling behind, i.e. an event
queue growing, shows as a growing gap), and the RSS of the driver, the self-play workers, the
trieye sidecar and the eval worker (VmRSS of the role's live processes, summed; MB).

After ``--minutes`` it sends SIGINT and fails (exit 1) unless:

- the driver exits 0, replaced every killed worker and kept training after the last kill;
- no role's private memory (RssAnon) grew, between the first sample after warm-up and the last
  sample, by more than ``--max-growth`` times *and* more than ``--max-growth-mb``; the driver's is
  taken net of the replay buffer's fill, whose preallocated arrays only become resident as
  positions arrive. Private, not total, RSS: VmRSS also counts the pages of Ray's shared-memory
  object store a process has touched (a buffer snapshot handed to the sidecar adds its size to
  the driver's and the sidecar's VmRSS once, and later snapshots reuse those pages), which is
  bounded by the object store's size and is not a leak; both are printed;
- MLflow holds one run for the name and no metric history repeats a step.

Writes the samples and verdicts to ``bench/results/soak.json`` and the driver's output beside it
(``soak.log``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

# Sibling module (bench/ is on sys.path when this file runs as a script).
from pipeline import ACTOR_ROLES, DRIVER, kill_tree, role_pids, sample_memory

from alphatriangle.app.runs import run_context
from alphatriangle.core import algorithm
from alphatriangle.core.config import AlphaTriangleConfig

CLI = str(Path(sys.executable).parent / "alphatriangle")
RUN_NAME = "soak"
ROLES = (DRIVER, *ACTOR_ROLES)
PROGRESS = re.compile(r"step=(\d+)/\d+\s+episodes=\d+\s+buffer=(\d+)")


def buffer_bytes_per_position() -> int:
    """Resident bytes one stored position adds to the driver (the default run's buffer)."""
    return algorithm.buffer_bytes_per_position(AlphaTriangleConfig())


@dataclass
class Row:
    """One sample of the run."""

    elapsed_s: float
    step: int
    buffer: int
    sidecar_step: int
    rss_mb: dict[str, float]
    anon_mb: dict[str, float]
    processes: dict[str, int]
    event: str = ""


@dataclass
class DriverOutput:
    """The driver's output, read on a thread so that its pipe never fills up."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    step: int = 0
    buffer: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._read, name="driver-output", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if match := PROGRESS.search(line):
                self.step, self.buffer = int(match.group(1)), int(match.group(2))
        self.done.set()

    def text(self) -> str:
        return "".join(self.lines)


def sidecar_step(run_json: Path) -> int:
    """The largest step the sidecar has written (run.json ``last_step``; -1 before any write)."""
    try:
        return int(json.loads(run_json.read_text())["last_step"])
    except FileNotFoundError:
        return -1


def sample(output: DriverOutput, run_json: Path, elapsed: float, event: str) -> Row:
    rss = dict.fromkeys(ROLES, 0.0)
    anon = dict.fromkeys(ROLES, 0.0)
    count = dict.fromkeys(ROLES, 0)
    for proc in sample_memory(output.proc.pid):
        rss[proc.role] += proc.rss_mb
        anon[proc.role] += proc.anon_mb
        count[proc.role] += 1
    return Row(elapsed, output.step, output.buffer, sidecar_step(run_json), rss, anon, count, event)


def print_header() -> None:
    roles = "".join(f"{role + ' MB':>20}" for role in ROLES)
    print(f"{'':>37}{'(private / total RSS)':>20}")
    print(f"{'min':>6}{'step':>8}{'buffer':>9}{'sidecar step':>14}{roles}  event", flush=True)


def memory_cell(row: Row, role: str) -> str:
    """Private / total MB of a role, with its process count when that is not one."""
    mb, count = f"{row.anon_mb[role]:.0f} / {row.rss_mb[role]:.0f}", row.processes[role]
    return f"{mb:>20}" if count == 1 else f"{mb:>16} ({count})"


def print_row(row: Row) -> None:
    cells = "".join(memory_cell(row, role) for role in ROLES)
    print(
        f"{row.elapsed_s / 60:>6.1f}{row.step:>8}{row.buffer:>9}{row.sidecar_step:>14}{cells}"
        f"  {row.event}",
        flush=True,
    )


def kill_one_worker(driver: int) -> str:
    workers = [pid for pid, role in role_pids(driver).items() if role == "SelfPlayWorker"]
    if not workers:
        return "no SelfPlayWorker process to kill"
    os.kill(workers[0], signal.SIGKILL)
    return f"SIGKILL SelfPlayWorker pid {workers[0]}"


def growth(
    first: Row, last: Row, max_ratio: float, max_mb: float
) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Per role: private memory (RssAnon) at both rows, the ratio and the increase, and the total
    RSS at both rows; and the roles over both limits."""
    per_position_mb = buffer_bytes_per_position() / 1e6
    report: dict[str, dict[str, float]] = {}
    failed = []
    for role in ROLES:
        start, end = first.anon_mb[role], last.anon_mb[role]
        if role == DRIVER:
            # The buffer's pages become resident as it fills: memory in use, not a leak.
            start -= first.buffer * per_position_mb
            end -= last.buffer * per_position_mb
        if start <= 0:
            continue
        ratio, increase = end / start, end - start
        report[role] = {
            "start_mb": start,
            "end_mb": end,
            "ratio": ratio,
            "increase_mb": increase,
            "rss_start_mb": first.rss_mb[role],
            "rss_end_mb": last.rss_mb[role],
        }
        if ratio > max_ratio and increase > max_mb:
            failed.append(role)
    return report, failed


def repeated_steps(root: Path) -> tuple[int, dict[str, int]]:
    """The number of MLflow runs named ``RUN_NAME``, and per metric of the run the number of
    repeated steps (only metrics with any)."""
    ctx = run_context(RUN_NAME, root)
    client = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(ctx.experiment_name)
    if experiment is None:
        return 0, {}
    runs = [
        r for r in client.search_runs([experiment.experiment_id]) if r.info.run_name == RUN_NAME
    ]
    repeats: dict[str, int] = {}
    for run in runs:
        for metric in run.data.metrics:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
            if len(steps) != len(set(steps)):
                repeats[metric] = len(steps) - len(set(steps))
    return len(runs), repeats


@dataclass
class SoakRun:
    """What happened during the soak."""

    rows: list[Row]
    kills: int
    returncode: int | None
    output: str
    first_step_s: float | None
    final_step: int
    mlflow_runs: int
    repeated_steps: dict[str, int]
    run_json: dict[str, Any]


def soak(minutes: float, kill_every: float, sample_every: float) -> SoakRun:
    """Run the trainer for ``minutes``, killing a worker every ``kill_every`` minutes and
    printing a row every ``sample_every`` seconds; then SIGINT it and read what it left."""
    rows: list[Row] = []
    kills = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_json = run_context(RUN_NAME, root).run_json
        launched = time.monotonic()
        proc = subprocess.Popen(
            [CLI, "train", "--run-name", RUN_NAME],
            env={**os.environ, "ALPHATRIANGLE_DATA": str(root), "CI": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        output = DriverOutput(proc)
        output.start()
        try:
            print_header()
            end = launched + 60 * minutes
            next_sample = launched + sample_every
            next_kill = launched + 60 * kill_every
            event = ""
            while (now := time.monotonic()) < end:
                if proc.poll() is not None:
                    raise SystemExit(
                        f"the driver exited early ({proc.returncode}):\n{output.text()}"
                    )
                if now >= next_kill:
                    event = kill_one_worker(proc.pid)
                    kills += event.startswith("SIGKILL")
                    next_kill += 60 * kill_every
                if now >= next_sample:
                    rows.append(sample(output, run_json, now - launched, event))
                    print_row(rows[-1])
                    event = ""
                    next_sample += sample_every
                time.sleep(max(0.0, min(next_sample, next_kill, end) - time.monotonic()))
            rows.append(
                sample(output, run_json, time.monotonic() - launched, f"{event} SIGINT".strip())
            )
            print_row(rows[-1])
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=300)
        finally:
            kill_tree(proc)
        output.done.wait(timeout=10)
        final = re.search(rf"stopped '{RUN_NAME}' at step (\d+)", output.text())
        first = re.search(r"first gradient step ([\d.]+) s", output.text())
        mlflow_runs, repeats = repeated_steps(root)
        return SoakRun(
            rows=rows,
            kills=kills,
            returncode=proc.returncode,
            output=output.text(),
            first_step_s=float(first.group(1)) if first else None,
            final_step=int(final.group(1)) if final else -1,
            mlflow_runs=mlflow_runs,
            repeated_steps=repeats,
            run_json=json.loads(run_json.read_text()) if run_json.exists() else {},
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the soak")
    parser.add_argument(
        "--kill-every", type=float, default=5.0, help="minutes between SelfPlayWorker kills"
    )
    parser.add_argument("--sample-every", type=float, default=30.0, help="seconds between rows")
    parser.add_argument(
        "--warmup-minutes",
        type=float,
        default=None,
        help="growth is measured from the first row this long after the first gradient step "
        "(default: a quarter of --minutes, at most 5)",
    )
    parser.add_argument("--max-growth", type=float, default=1.5, help="RSS ratio limit per role")
    parser.add_argument(
        "--max-growth-mb", type=float, default=200.0, help="RSS increase limit per role (MB)"
    )
    parser.add_argument("--json", type=Path, default=Path("bench/results/soak.json"))
    args = parser.parse_args()
    warmup = args.warmup_minutes if args.warmup_minutes is not None else min(5.0, args.minutes / 4)
    print(
        f"soak: {args.minutes:g} min of `alphatriangle train` on defaults, a SelfPlayWorker "
        f"SIGKILLed every {args.kill_every:g} min, {os.cpu_count()} CPUs",
        flush=True,
    )
    run = soak(args.minutes, args.kill_every, args.sample_every)
    if not run.rows:
        raise SystemExit("no sample was taken: use --minutes longer than --sample-every")

    warm = (run.first_step_s or 0.0) + 60 * warmup
    baseline = next((r for r in run.rows if r.elapsed_s >= warm), run.rows[-1])
    report, grown = growth(baseline, run.rows[-1], args.max_growth, args.max_growth_mb)
    print(
        f"\nPrivate memory (RssAnon) growth from {baseline.elapsed_s / 60:.1f} min to the end "
        "(driver net of the replay buffer's fill; total VmRSS alongside):"
    )
    for role, g in report.items():
        print(
            f"  {role:<16}{g['start_mb']:>7.0f} MB -> {g['end_mb']:>7.0f} MB  "
            f"x{g['ratio']:.2f}  {g['increase_mb']:+.0f} MB   "
            f"(VmRSS {g['rss_start_mb']:.0f} -> {g['rss_end_mb']:.0f} MB)"
        )
    replaced = run.output.count("starting a replacement")
    last_kill_step = max((r.step for r in run.rows if r.event.startswith("SIGKILL")), default=0)
    checks = {
        "driver exited 0 after SIGINT": run.returncode == 0,
        f"every killed worker replaced ({replaced} of {run.kills})": replaced >= run.kills > 0,
        f"trained after the last kill (step {last_kill_step} -> {run.final_step})": (
            run.final_step > last_kill_step
        ),
        f"private memory growth within x{args.max_growth:g} or +{args.max_growth_mb:g} MB": (
            not grown
        ),
        f"one MLflow run named {RUN_NAME!r} ({run.mlflow_runs})": run.mlflow_runs == 1,
        "no repeated metric steps in MLflow": not run.repeated_steps,
    }
    record = run.run_json
    print(
        f"\nrun.json: status {record.get('status')}, last_step {record.get('last_step')}, "
        f"events {record.get('counters', {}).get('events')}, lost_events "
        f"{record.get('lost_events')}, sidecar restarts {record.get('restarts')}"
    )
    for check, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {check}")
    if grown:
        print(f"  roles over the growth limit: {', '.join(grown)}")
    if run.repeated_steps:
        print(f"  metrics with repeated steps: {run.repeated_steps}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    log = args.json.with_suffix(".log")
    log.write_text(run.output)
    print(f"\ndriver output: {log}; samples: {args.json}")
    args.json.write_text(
        json.dumps(
            {
                "minutes": args.minutes,
                "kill_every_minutes": args.kill_every,
                "machine_cpus": os.cpu_count(),
                "rows": [asdict(r) for r in run.rows],
                "growth": report,
                "checks": checks,
                "run_json": record,
            },
            indent=2,
        )
    )
    if not all(checks.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
