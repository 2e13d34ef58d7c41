"""The full pipeline on this machine: ``alphatriangle train`` on its defaults, end to end.

Run: ``.venv/bin/python bench/pipeline.py [--seconds 120]``. Starts a fresh run in a temporary
data directory, lets it train for ``--seconds``, stops it with SIGINT, then restarts it by name
for a few steps. Then, on the same machine, a second fresh run of ``--seconds`` with the
defaults this project had before the multi-game engine (one worker, one game per worker), for
the side-by-side self-play rate. Prints a table: time from launch to the first gradient step (new run and
resumed run), self-play moves/s and learner samples/s while both run, the steps reached, the
time the stop took, and the peak memory of each process of the new run.

Memory: every second while the new run trains (and until it has exited), the VmRSS and VmHWM
(the kernel's own peak, so spikes between samples count) of the driver and of the Ray actor
processes it started, found by process title among the driver's descendants. RSS includes the
pages of Ray's shared-memory object store that a process has touched, so summing roles
over-counts shared data.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLI = str(Path(sys.executable).parent / "alphatriangle")
ACTOR_ROLES = ("SelfPlayWorker", "TrieyeActor", "EvalActor")
"""Ray actor classes whose processes are measured; Ray titles them ``ray::<Class>[.method]``."""
DRIVER = "driver"


@dataclass(frozen=True)
class ProcMemory:
    """Memory of one process at one instant, in MB: VmRSS, VmHWM (peak VmRSS so far) and
    RssAnon (the private part of VmRSS, without shared object-store and file pages)."""

    pid: int
    role: str
    rss_mb: float
    hwm_mb: float
    anon_mb: float


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process exited while we scanned /proc
            continue
        # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _descendants(root: int) -> list[int]:
    """Processes below ``root``: Ray's raylet is the driver's child and starts the actors, so
    this finds this run's actors and never those of another Ray session on the machine."""
    children = _children_by_parent()
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _actor_role(pid: int) -> str | None:
    try:
        title = (
            Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
        )
    except OSError:
        return None
    if not title.startswith("ray::"):
        return None
    role = title.removeprefix("ray::").split(".", 1)[0].strip()
    return role if role in ACTOR_ROLES else None


def _memory(pid: int, role: str) -> ProcMemory | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if "VmRSS" not in fields:  # a zombie has no memory left to report
        return None

    def mb(key: str) -> float:
        return int(fields[key].split()[0]) / 1024.0

    return ProcMemory(pid, role, mb("VmRSS"), mb("VmHWM"), mb("RssAnon"))


def role_pids(driver: int) -> dict[int, str]:
    """The driver and its Ray actor processes, pid -> role."""
    pids = {driver: DRIVER}
    for pid in _descendants(driver):
        role = _actor_role(pid)
        if role is not None:
            pids[pid] = role
    return pids


def sample_memory(driver: int) -> list[ProcMemory]:
    """Memory of the driver and of each of its Ray actor processes, now."""
    samples = (_memory(pid, role) for pid, role in role_pids(driver).items())
    return [sample for sample in samples if sample is not None]


class MemoryMonitor:
    """Samples ``sample_memory(driver)`` every ``interval`` seconds on a background thread."""

    def __init__(self, driver: int, interval: float = 1.0) -> None:
        self.driver = driver
        self.interval = interval
        self.samples: list[ProcMemory] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.extend(sample_memory(self.driver))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peaks(self) -> dict[str, dict[str, float]]:
        """Per role: the largest VmHWM and sampled VmRSS of any one of its processes (MB), and
        how many processes held the role over the run."""
        peaks: dict[str, dict[str, float]] = {}
        for role in (DRIVER, *ACTOR_ROLES):
            mine = [s for s in self.samples if s.role == role]
            if mine:
                peaks[role] = {
                    "peak_hwm_mb": round(max(s.hwm_mb for s in mine), 1),
                    "peak_rss_sampled_mb": round(max(s.rss_mb for s in mine), 1),
                    "processes": len({s.pid for s in mine}),
                }
        return peaks


def kill_tree(proc: subprocess.Popen[str]) -> None:
    """SIGKILL a driver that is still running and every process below it: a driver killed
    alone leaves its Ray processes (raylet, gcs_server, actors) behind."""
    if proc.poll() is not None:
        return
    tree = _descendants(proc.pid)
    proc.kill()
    proc.wait()
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _launch(data: Path, name: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "ALPHATRIANGLE_DATA": str(data), "CI": "1"}
    return subprocess.Popen(
        [CLI, "train", "--run-name", name, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _first_step(proc: subprocess.Popen[str], launched: float, lines: list[str]) -> float:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if "first gradient step" in line:
            return time.monotonic() - launched
    raise RuntimeError("the run ended before its first gradient step:\n" + "".join(lines))


PREVIOUS_DEFAULTS = (
    '[mcts]\nvariant = "puct"\nsimulations = 64\n[train]\nnum_workers = 1\ngames_per_worker = 1\n'
)
"""The self-play settings ``alphatriangle train`` defaulted to on 2 CPUs before the multi-game
engine: one worker (CPUs minus one), one game at a time, 64-simulation PUCT."""


def _rates(data: Path, name: str, seconds: float, *args: str) -> tuple[float, float]:
    """(self-play moves/s, learner samples/s) the CLI reports for a fresh run of ``seconds``."""
    launched = time.monotonic()
    proc = _launch(data, name, *args)
    lines: list[str] = []
    try:
        _first_step(proc, launched, lines)
        time.sleep(max(0.0, seconds - (time.monotonic() - launched)))
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        kill_tree(proc)
    text = "".join(lines) + out
    rates = re.search(r"self-play ([\d.]+) moves/s, learner (\d+) samples/s", text)
    if proc.returncode != 0 or not rates:
        raise SystemExit(f"the run {name!r} failed (exit {proc.returncode}):\n{text}")
    return float(rates.group(1)), float(rates.group(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="training time of the run")
    parser.add_argument("--json", type=Path, default=Path("bench/results/pipeline.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        launched = time.monotonic()
        lines: list[str] = []
        proc = _launch(data, "bench")
        monitor = MemoryMonitor(proc.pid)
        try:
            first = _first_step(proc, launched, lines)
            time.sleep(max(0.0, args.seconds - (time.monotonic() - launched)))
            stopping = time.monotonic()
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=120)
            stop_s = time.monotonic() - stopping
        finally:
            monitor.stop()
            kill_tree(proc)
        text = "".join(lines) + out
        rates = re.search(r"self-play ([\d.]+) moves/s, learner (\d+) samples/s", text)
        final = re.search(r"stopped 'bench' at step (\d+)", text)
        if proc.returncode != 0 or not rates or not final:
            raise SystemExit(f"the run failed (exit {proc.returncode}):\n{text}")
        step = int(final.group(1))

        launched = time.monotonic()
        resumed = _launch(data, "bench", "--max-steps", str(step + 3))
        try:
            resume_first = _first_step(resumed, launched, [])
            resumed_out, _ = resumed.communicate(timeout=120)
        finally:
            kill_tree(resumed)
        if resumed.returncode != 0:
            raise SystemExit(f"the resumed run failed (exit {resumed.returncode}):\n{resumed_out}")

        previous_cfg = data / "previous.toml"
        previous_cfg.write_text(PREVIOUS_DEFAULTS)
        previous = _rates(data, "previous", args.seconds, "--config", str(previous_cfg))

    results: dict[str, Any] = {
        "machine_cpus": os.cpu_count(),
        "train_seconds": args.seconds,
        "first_step_s_new_run": round(first, 1),
        "first_step_s_resumed_run": round(resume_first, 1),
        "selfplay_moves_per_s": float(rates.group(1)),
        "learner_samples_per_s": float(rates.group(2)),
        "steps": step,
        "sigint_to_exit_s": round(stop_s, 1),
        "samples_trained_per_generated": round(float(rates.group(2)) / float(rates.group(1)), 2),
        "previous_defaults_selfplay_moves_per_s": previous[0],
        "previous_defaults_learner_samples_per_s": previous[1],
        "selfplay_speedup_vs_previous_defaults": round(float(rates.group(1)) / previous[0], 2),
    }
    peaks = monitor.peaks()
    print(f"| measure (alphatriangle train, defaults, {os.cpu_count()} CPUs) | value |")
    print("|---|---|")
    for key, value in results.items():
        print(f"| {key} | {value} |")
    for role, peak in peaks.items():
        print(
            f"| peak RSS {role} | {peak['peak_hwm_mb']:.0f} MB (VmHWM; sampled VmRSS max "
            f"{peak['peak_rss_sampled_mb']:.0f} MB; {peak['processes']:.0f} process(es)) |"
        )
    results["peak_rss_mb"] = peaks
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
