"""The GPU path, measured: a short ``alphatriangle train`` with GPU workers and a GPU learner,
then the same run on the CPU, side by side.

Run: ``make gpu-check`` (installs, then runs this), or ``.venv/bin/python bench/gpu_check.py
[--steps 300]``. Needs an NVIDIA GPU and the CUDA build of ``torch`` (the one PyPI serves on
Linux; ``make install`` with the CPU wheel index, as on the development machine, gives the CPU
build); without either it says so in one line and exits 1. About 3-4 minutes on one GPU.

Each run trains ``--steps`` gradient steps of a fresh run in a temporary data directory, with
the default config but no periodic evaluation (self-play and the learner only); the CPU run
hides the GPU (``CUDA_VISIBLE_DEVICES=""``: PyTorch and Ray then see none). Read back from the
run's MLflow store: self-play moves/s (``speed/moves_per_s``) and learner samples/s
(``speed/samples_trained_per_s``), mean over the second half of the run; the moves/s of one
worker (``worker/moves_per_s``); GPU utilisation and memory (``system/gpu0/*``, sampled by the
learner every 15 s), mean and max. ``--only cpu`` runs the CPU half alone (no GPU needed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = str(Path(sys.executable).parent / "alphatriangle")
METRICS = {
    "moves_per_s": "speed/moves_per_s",
    "samples_per_s": "speed/samples_trained_per_s",
    "worker_moves_per_s": "worker/moves_per_s",
    "gpu_util_percent": "system/gpu0/utilization_percent",
    "gpu_memory_mb": "system/gpu0/memory_mb",
}
CONFIG = "[eval]\nevery_steps = 0\n"
"""No periodic evaluation: its actor would take a share of the device and of the CPUs."""


def gpu_problem() -> str | None:
    """Why this machine cannot run the GPU half, in one line; None when it can."""
    import torch

    if torch.version.cuda is None:
        return (
            f"gpu_check: torch {torch.__version__} is the CPU build; install the CUDA build "
            "(.venv/bin/pip install --force-reinstall torch==<the pinned version> --index-url "
            "https://download.pytorch.org/whl/<cuda tag>) and run it again"
        )
    if not torch.cuda.is_available():
        return (
            f"gpu_check: no GPU visible (torch {torch.__version__}, CUDA {torch.version.cuda}: "
            "torch.cuda.is_available() is False); run it on a machine with an NVIDIA GPU "
            "and its driver"
        )
    return None


def train(device: str, steps: int, root: Path, timeout_s: float) -> dict[str, float]:
    """One fresh run of ``steps`` steps on ``device`` ("gpu" or "cpu"); its figures."""
    from mlflow.tracking import MlflowClient

    from alphatriangle.app.runs import run_context
    from trieye import read_run

    config = root / "gpu_check.toml"
    config.write_text(CONFIG)
    env = dict(os.environ, PYGAME_HIDE_SUPPORT_PROMPT="1")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    name = f"gpu-check-{device}"
    started = time.monotonic()
    subprocess.run(
        [
            CLI,
            "train",
            "--run-name",
            name,
            "--max-steps",
            str(steps),
            "--config",
            str(config),
            "--data-dir",
            str(root),
        ],
        env=env,
        check=True,
        timeout=timeout_s,
        stdout=subprocess.DEVNULL,
    )
    wall = time.monotonic() - started
    run = run_context(name, root)
    record = read_run(run)
    assert record is not None
    client = MlflowClient(run.app.mlflow_tracking_uri)
    figures = {"wall_s": wall}
    for key, metric in METRICS.items():
        points = sorted(
            client.get_metric_history(record.mlflow_run_id, metric), key=lambda p: p.step
        )
        values = [p.value for p in points]
        if key in ("moves_per_s", "samples_per_s"):
            values = values[len(values) // 2 :]  # past start-up
        figures[key] = statistics.fmean(values) if values else float("nan")
        if key.startswith("gpu"):
            figures[key + "_max"] = max(values) if values else float("nan")
    return figures


def table(rows: dict[str, dict[str, float]]) -> str:
    lines = [
        "| run | wall s | self-play moves/s | per worker | learner samples/s | GPU util % mean / max "
        "| GPU memory MB mean / max |",
        "|---|---|---|---|---|---|---|",
    ]
    for device, f in rows.items():
        gpu = "-"
        memory = "-"
        if device == "gpu":
            gpu = f"{f['gpu_util_percent']:.0f} / {f['gpu_util_percent_max']:.0f}"
            memory = f"{f['gpu_memory_mb']:,.0f} / {f['gpu_memory_mb_max']:,.0f}"
        lines.append(
            f"| {device} | {f['wall_s']:.0f} | {f['moves_per_s']:,.0f} | "
            f"{f['worker_moves_per_s']:,.0f} | {f['samples_per_s']:,.0f} | {gpu} | {memory} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="Gradient steps of each run.")
    parser.add_argument("--only", choices=["gpu", "cpu"], help="Run one half only.")
    parser.add_argument("--timeout", type=float, default=150.0, help="Seconds each run may take.")
    args = parser.parse_args()
    devices = [args.only] if args.only else ["gpu", "cpu"]
    if "gpu" in devices and (problem := gpu_problem()) is not None:
        print(problem, file=sys.stderr)
        sys.exit(1)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="gpu_check") as tmp:
        for device in devices:
            rows[device] = train(device, args.steps, Path(tmp), args.timeout)
            print(f"{device}: done in {rows[device]['wall_s']:.0f} s", flush=True)
    import torch

    if "gpu" in devices:
        print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    print(f"CPUs: {os.cpu_count()}; {args.steps} steps per run")
    print(table(rows))


if __name__ == "__main__":
    main()
