"""The full pipeline on this machine: ``alphatriangle train`` on its defaults, end to end.

Run: ``.venv/bin/python bench/pipeline.py [--seconds 120]``. Starts a fresh run in a temporary
data directory, lets it train for ``--seconds``, stops it with SIGINT, then restarts it by name
for a few steps. Prints a table: time from launch to the first gradient step (new run and
resumed run), self-play moves/s and learner samples/s while both run, the steps reached, and
the time the stop took.
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
import time
from pathlib import Path

CLI = str(Path(sys.executable).parent / "alphatriangle")


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
        first = _first_step(proc, launched, lines)
        time.sleep(max(0.0, args.seconds - (time.monotonic() - launched)))
        stopping = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        stop_s = time.monotonic() - stopping
        text = "".join(lines) + out
        rates = re.search(r"self-play ([\d.]+) moves/s, learner (\d+) samples/s", text)
        final = re.search(r"stopped 'bench' at step (\d+)", text)
        if proc.returncode != 0 or not rates or not final:
            raise SystemExit(f"the run failed (exit {proc.returncode}):\n{text}")
        step = int(final.group(1))

        launched = time.monotonic()
        resumed = _launch(data, "bench", "--max-steps", str(step + 3))
        resume_first = _first_step(resumed, launched, [])
        resumed.communicate(timeout=120)

    results = {
        "machine_cpus": os.cpu_count(),
        "train_seconds": args.seconds,
        "first_step_s_new_run": round(first, 1),
        "first_step_s_resumed_run": round(resume_first, 1),
        "selfplay_moves_per_s": float(rates.group(1)),
        "learner_samples_per_s": float(rates.group(2)),
        "steps": step,
        "sigint_to_exit_s": round(stop_s, 1),
    }
    print(f"| measure (alphatriangle train, defaults, {os.cpu_count()} CPUs) | value |")
    print("|---|---|")
    for key, value in results.items():
        print(f"| {key} | {value} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
