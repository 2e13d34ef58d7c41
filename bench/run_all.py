"""Every default benchmark, one after another, summarised in one markdown table.

Run: ``make bench`` or ``.venv/bin/python bench/run_all.py`` (about 9 minutes on 2 cores).
Runs ``selfplay.py``, ``trieye_bench.py``, ``persistence.py`` and ``pipeline.py`` as separate
processes (so that none inherits another's Ray session or threads), echoing their output, then
prints one table (measure | value | how measured) and writes ``bench/results/summary.json``.
The opt-in ``learning.py`` and ``soak.py`` take 30 minutes or more each and are not run here.

The numbers are only as quiet as the machine: the load average before and after each
benchmark is printed and saved, so that a run next to other work can be recognised.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
SELFPLAY_ROW = re.compile(
    r"^(?P<label>\S.*?)\s+(?P<wall>[\d.]+)\s+(?P<cpu>[\d.]+)\s+(?P<count>\d+)\s+(?P<s>[\d.]+)$"
)


@dataclass
class Bench:
    """One sub-benchmark: its script, arguments and what it left behind."""

    script: str
    args: list[str]
    timeout_s: float
    seconds: float = 0.0
    returncode: int | None = None
    stdout: str = ""
    load_before: float = 0.0
    load_after: float = 0.0


@dataclass
class Row:
    """One line of the summary table."""

    measure: str
    value: str
    how: str


def run(bench: Bench) -> None:
    """Run one benchmark, echoing its output as it comes and keeping it."""
    print(f"\n=== {bench.script} {' '.join(bench.args)}", flush=True)
    bench.load_before = os.getloadavg()[0]
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / bench.script), *bench.args],
        cwd=BENCH.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Past its budget a benchmark gets SIGINT, not SIGTERM: KeyboardInterrupt runs its
    # `finally` blocks, which shut its Ray session and trainer processes down.
    watchdog = threading.Timer(bench.timeout_s, proc.send_signal, [signal.SIGINT])
    watchdog.start()
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    bench.returncode = proc.wait()
    watchdog.cancel()
    bench.seconds = time.monotonic() - start
    bench.stdout = "".join(lines)
    bench.load_after = os.getloadavg()[0]


def selfplay_results(stdout: str) -> dict[str, Any]:
    """selfplay.py prints a table and writes no JSON: read the table."""
    rates = {}
    for line in stdout.splitlines():
        if match := SELFPLAY_ROW.match(line.strip()):
            rates[match["label"]] = {
                "per_wall_s": float(match["wall"]),
                "per_cpu_s": float(match["cpu"]),
            }
    network = re.search(r"default network: (channels .*?parameters)", stdout)
    return {"rates": rates, "network": network.group(1) if network else "default network"}


def selfplay_rows(data: dict[str, Any]) -> list[Row]:
    rates, net = data["rates"], data["network"]

    def rate(label: str, unit: str) -> str:
        measured = next(v for k, v in rates.items() if k.startswith(label))
        return (
            f"{measured['per_cpu_s']:,.0f} {unit} per CPU-second "
            f"({measured['per_wall_s']:,.0f} per wall second)"
        )

    how = "bench/selfplay.py: one process, torch.set_num_threads(1), PUCT with 64 simulations"
    k_rows = [
        k for k in rates if k.startswith("default network: moves, K=") and not k.endswith("K=1")
    ]
    k = k_rows[0].rsplit("=", 1)[1] if k_rows else "?"
    return [
        Row(
            "self-play moves/s per core, default network, 1 game at a time (K=1)",
            rate("default network: moves, K=1", "moves"),
            f"{how}; {net}, untrained",
        ),
        Row(
            f"self-play moves/s per core, default network, K={k} games at once",
            rate(f"default network: moves, K={k}", "moves"),
            f"{how}; {net}, untrained; one network call for the leaves of all K trees",
        ),
        Row(
            f"self-play moves/s per core, the default search (Gumbel, 32 simulations), K={k}",
            rate("default search", "moves"),
            f"bench/selfplay.py: one process, 1 thread; {net}, untrained; the default [mcts]",
        ),
        Row(
            f"self-play moves/s per core, MuZero latent search (default settings), K={k}",
            rate("MuZero latent search", "moves"),
            "bench/selfplay.py: one process, 1 thread; default MuZero network, untrained",
        ),
        Row(
            f"self-play moves/s per core, MuZero latent search with PUCT, K={k}",
            rate("MuZero latent PUCT search", "moves"),
            "bench/selfplay.py: the same network and settings, mcts.variant = 'puct'",
        ),
        Row(
            "self-play moves/s per core, uniform-prior search",
            rate("uniform-prior search", "moves"),
            f"{how}; no network (search and game engine only)",
        ),
        Row("NN evaluations/s during self-play", rate("default network: NN evals", "evals"), how),
        Row(
            "NN evaluations/s, batch of mcts_batch_size",
            rate("NN evals, evaluate_arrays of 8", "evals"),
            f"{how}; evaluate_arrays, what the searches call",
        ),
        Row(
            "NN evaluations/s, batch of K x mcts_batch_size",
            _last(rates, "NN evals, evaluate_arrays of", "evals"),
            f"{how}; evaluate_arrays, what the multi-game search calls",
        ),
        Row(
            "learner samples/s per core",
            rate("learner samples", "samples"),
            f"{how}; train_step on batches sampled from a ReplayBuffer",
        ),
    ]


def _last(rates: dict[str, Any], label: str, unit: str) -> str:
    measured = [v for k, v in rates.items() if k.startswith(label)][-1]
    return (
        f"{measured['per_cpu_s']:,.0f} {unit} per CPU-second "
        f"({measured['per_wall_s']:,.0f} per wall second)"
    )


def trieye_rows(data: dict[str, Any]) -> list[Row]:
    batched, naive = data["batched"], data["one_rpc_per_event"]
    how = (
        "bench/trieye_bench.py: real TrieyeActor, Ray with 2 CPUs, until the actor wrote its sinks"
    )
    return [
        Row("trieye events/s, batched client", f"{batched['events_per_s']:,.0f}", how),
        Row(
            "trieye caller cost per event",
            f"{batched['caller_ns'] / 1000:.1f} us (append alone {batched['append_ns']:.0f} ns)",
            f"{how}; wall time in client.log, shipping and back-pressure included",
        ),
        Row(
            "trieye events/s, one RPC per event (baseline)",
            f"{naive['events_per_s']:,.0f} ({data['ratio']:.0f}x slower)",
            how,
        ),
    ]


def persistence_rows(data: dict[str, Any]) -> list[Row]:
    n = f"{data['buffer_positions']:,}"
    how = (
        f"bench/persistence.py: real TrieyeActor, buffer of {n} positions + default "
        f"model/AdamW state, median of {data['repeats']} per figure"
    )
    return [
        Row(
            "checkpoint save: learner blocked",
            f"{data['learner_blocked_s']:.2f} s",
            f"{how}; state_dict() + client.save_checkpoint() until it returns an ObjectRef",
        ),
        Row(
            "checkpoint save: wall time",
            f"{data['save_wall_s']:.2f} s",
            f"{how}; until ray.get(ref): written, fsynced, sha256 manifest",
        ),
        Row(
            "checkpoint files",
            f"{data['checkpoint_bytes'] / 1e6:.2f} MB model+optimizer, "
            f"{data['buffer_bytes'] / 1e6:.0f} MB buffer",
            f"{how}; .pt and uncompressed .npz",
        ),
        Row(
            "checkpoint restore",
            f"{data['restore_total_s']:.2f} s (load_latest {data['load_latest_s']:.2f} s, "
            f"buffer.load_state_dict {data['buffer_load_state_dict_s']:.2f} s)",
            f"{how}; sha256 verified, torch.load(weights_only=True), np.load(allow_pickle=False)",
        ),
    ]


def pipeline_rows(data: dict[str, Any]) -> list[Row]:
    cpus = data["machine_cpus"]
    how = (
        f"bench/pipeline.py: `alphatriangle train` on defaults, {cpus} CPUs, "
        f"{data['train_seconds']:g} s run"
    )
    rows = [
        Row(
            "pipeline self-play moves/s (all workers)",
            f"{data['selfplay_moves_per_s']:.1f}",
            f"{how}; the CLI's own report at exit, learner running alongside",
        ),
        Row(
            "pipeline self-play moves/s, previous defaults (1 worker, 1 game)",
            f"{data['previous_defaults_selfplay_moves_per_s']:.1f} (new defaults: "
            f"{data['selfplay_speedup_vs_previous_defaults']:.2f}x)",
            f"{how}; the same length of run just after, `--config` num_workers = 1, "
            "games_per_worker = 1",
        ),
        Row(
            "pipeline samples trained per sample generated",
            f"{data['samples_trained_per_generated']:.2f}",
            f"{how}; learner samples/s / self-play moves/s (the configured replay_ratio is 4)",
        ),
        Row(
            "pipeline learner samples/s",
            f"{data['learner_samples_per_s']:.0f}",
            f"{how}; the CLI's own report at exit (bounded by replay_ratio x self-play)",
        ),
        Row(
            "launch to first gradient step, new run",
            f"{data['first_step_s_new_run']:.1f} s",
            f"{how}; includes Ray start-up and filling min_buffer_size",
        ),
        Row(
            "launch to first gradient step, resumed run",
            f"{data['first_step_s_resumed_run']:.1f} s",
            f"{how}; restart by name after SIGINT: checkpoint + buffer restored",
        ),
        Row(
            "SIGINT to exit",
            f"{data['sigint_to_exit_s']:.1f} s",
            f"{how}; includes the final checkpoint and buffer save",
        ),
    ]
    for role, peak in data.get("peak_rss_mb", {}).items():
        rows.append(
            Row(
                f"peak RSS, {role}",
                f"{peak['peak_hwm_mb']:.0f} MB",
                f"{how}; VmHWM sampled every second, largest of "
                f"{peak['processes']:.0f} process(es)",
            )
        )
    return rows


def cpu_model() -> str:
    """The CPU's model name (Linux), else the machine type."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--selfplay-seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--pipeline-seconds", type=float, default=120.0, help="training run")
    parser.add_argument("--trieye-events", type=int, default=500_000)
    parser.add_argument("--persistence-repeats", type=int, default=3)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    files = {name: RESULTS / f"{name}.json" for name in ("trieye_bench", "persistence", "pipeline")}
    # A benchmark that fails must not be reported with the numbers of an earlier run.
    for path in files.values():
        path.unlink(missing_ok=True)
    benches = {
        "selfplay": Bench("selfplay.py", ["--seconds", f"{args.selfplay_seconds:g}"], 300),
        "trieye_bench": Bench(
            "trieye_bench.py",
            ["--events", str(args.trieye_events), "--baseline-events", "10000"],
            300,
        ),
        "persistence": Bench(
            "persistence.py",
            ["--repeats", str(args.persistence_repeats), "--json", str(files["persistence"])],
            300,
        ),
        "pipeline": Bench(
            "pipeline.py",
            ["--seconds", f"{args.pipeline_seconds:g}", "--json", str(files["pipeline"])],
            2 * args.pipeline_seconds + 500,
        ),
    }
    started = time.monotonic()
    for bench in benches.values():
        run(bench)

    readers: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
        "selfplay": selfplay_rows,
        "trieye_bench": trieye_rows,
        "persistence": persistence_rows,
        "pipeline": pipeline_rows,
    }
    rows: list[Row] = []
    results: dict[str, Any] = {}
    failed: list[str] = []
    for name, bench in benches.items():
        if bench.returncode != 0:
            failed.append(f"{bench.script} (exit {bench.returncode})")
            continue
        if name == "selfplay":
            results[name] = selfplay_results(bench.stdout)
        else:
            results[name] = json.loads(files[name].read_text())
        rows += readers[name](results[name])

    machine = {
        "cpus": os.cpu_count(),
        "processor": cpu_model(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "system": platform.platform(),
    }
    loads = ", ".join(
        f"{b.script} {b.load_before:.1f}->{b.load_after:.1f}" for b in benches.values()
    )
    print(
        f"\n## AlphaTriangle benchmarks ({machine['cpus']} CPUs, {machine['processor']}, "
        f"{machine['memory_gb']} GiB)\n"
    )
    print("| measure | value | how measured |\n|---|---|---|")
    for row in rows:
        print(f"| {row.measure} | {row.value} | {row.how} |")
    print(f"\n1-minute load average before->after each benchmark: {loads}")
    print(f"total {time.monotonic() - started:.0f} s; written to {RESULTS / 'summary.json'}")
    summary = {
        "machine": machine,
        "rows": [asdict(row) for row in rows],
        "benchmarks": {
            name: {
                "args": b.args,
                "returncode": b.returncode,
                "seconds": round(b.seconds, 1),
                "load_before": b.load_before,
                "load_after": b.load_after,
            }
            for name, b in benches.items()
        },
        "failed": failed,
        "results": results,
    }
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2))
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
