"""The pipeline from 2 to 256 self-play workers: the real driver, learner, pool and sidecar
against simulated workers.

Run: ``.venv/bin/python bench/scale.py [--workers 2 8 16 32 64 128 256] [--seconds 20]
[--out bench/results/scale]`` (opt-in; about 6 minutes on 2 cores as ``make scale`` runs it).

Each worker count is one ``alphatriangle.distributed.driver.train`` call on a Ray cluster the
benchmark starts (``ray start --head`` with as many logical CPUs as the largest count, so the
driver's worker check passes). The only thing swapped is the pool (``train(pool=...)``): a
``WorkerPool`` whose workers play no games. Each simulated worker answers ``play()`` after
``length / --moves-per-s`` seconds (75 moves/s: one CPU worker of the default search) with one
episode of the real shapes (synthetic arrays, lengths 30 to 90), and sends the events a real
worker sends (``episode_end`` with its context, moves, search KL, explained variance, system
metrics, moves/s, simulations/s, then one ``deliver``). ``set_weights`` receives the published
weights (Ray deserialises the tensors, as for a real worker).

Simulated workers share processes, ``--per-process`` (16) to a Ray actor with that many
threads: 256 Ray processes that import torch would need minutes to start and most of this
machine's memory. Per worker everything the driver and the sidecar see stays separate: one
``play`` call and one result object per episode batch, one ``set_weights`` call per publish,
one trieye client (its own event stream). What it leaves out is the memory and start-up of a
process per worker and the per-process copy of the weights out of the object store.

Per worker count, over the ``--seconds`` after every worker has returned an episode and the
learner has started: positions/s ingested (episodes the driver took into the buffer), samples/s
trained, the replay ratio kept (trained / ingested, the config asks for 4), publish latency (a
learner step's ``publish`` until every worker has received that version; median and max over
the versions the learner published in the run), the sidecar's lag (events it has received minus those
its last write covers, sampled every second: mean and max), CPU (percent of one core) and RSS
of the driver and of the sidecar (psutil, sampled every second).

``--before 2 8 32`` runs these counts first as the driver did before
``distributed.workers.learner_threads``: the learner with PyTorch's default of a thread per
core (``train.learner_threads`` = the machine's cores), then as now, one after the other.
Prints a markdown table; writes ``scale.json`` and ``scale.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# As the CLI does (alphatriangle.app.cli): `ray start` turns token authentication on when
# ~/.ray/auth_token exists, and Ray reads the driver's setting once, at import.
if "RAY_AUTH_MODE" not in os.environ and (Path.home() / ".ray" / "auth_token").exists():
    os.environ["RAY_AUTH_MODE"] = "token"

import numpy as np
import psutil
import ray

from alphatriangle import metric_names as m
from alphatriangle.app.runs import app_context
from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.features import feature_spec
from alphatriangle.core.selfplay import EpisodeRecord
from alphatriangle.distributed import driver
from alphatriangle.distributed.meter import Snapshot
from alphatriangle.distributed.pool import WorkerPool
from alphatriangle.distributed.selfplay_actor import episode_context
from trieye import RunContext, connect
from trieye.run_record import RunRecord
from trieye.system import ProcessSampler

DEFAULT_WORKERS = (2, 8, 16, 32, 64, 128, 256)
TEMPLATES = 8
"""Distinct synthetic episodes each simulated-worker process holds."""


def synthetic_episodes(count: int, seed: int) -> list[EpisodeRecord]:
    """``count`` episodes of the real feature shapes, 30 to 90 moves, random contents."""
    spec = feature_spec()
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(count):
        t = int(rng.integers(30, 91))
        policy = rng.random((t, spec.action_dim), dtype=np.float32)
        rewards = rng.integers(0, 3, size=t).astype(np.float32)
        scores = np.concatenate([[0.0], np.cumsum(rewards)]).astype(np.float32)
        episodes.append(
            EpisodeRecord(
                grid=rng.random((t, *spec.grid_shape), dtype=np.float32),
                other=rng.random((t, spec.other_dim), dtype=np.float32),
                policy=policy / policy.sum(axis=1, keepdims=True),
                valid_mask=rng.random((t, spec.action_dim)) < 0.3,
                scores=scores,
                rewards=rewards,
                score=float(scores[-1]),
                length=t,
                triangles_cleared=int(rewards.sum()),
                simulations=32 * t,
                search_depth=3.0,
                seed=int(rng.integers(2**31)),
                actions=rng.integers(0, spec.action_dim, size=t),
            )
        )
    return episodes


@ray.remote(num_cpus=0, max_restarts=0)
class SimulatedWorkers:
    """``slots`` simulated self-play workers in one process, each with ``SelfPlayWorker``'s
    ``set_weights`` and ``play`` (plus the slot), its own trieye client and its own pace."""

    def __init__(
        self, run: RunContext, cfg: AlphaTriangleConfig, slots: int, moves_per_s: float, seed: int
    ) -> None:
        self.cfg = cfg
        self.moves_per_s = moves_per_s
        self.templates = synthetic_episodes(TEMPLATES, seed)
        self.clients = [connect(run) for _ in range(slots)]
        self.system = [ProcessSampler(m.SYSTEM_SELFPLAY) for _ in range(slots)]
        self.versions = [-1] * slots
        self.arrivals: list[tuple[int, float]] = []
        self.lock = threading.Lock()
        self.rng = np.random.default_rng(seed)

    def set_weights(self, slot: int, weights: dict[str, Any], version: int) -> int:
        self.versions[slot] = version
        with self.lock:
            self.arrivals.append((version, time.time()))
        return version

    def play(self, slot: int, worker_id: int) -> list[EpisodeRecord]:
        with self.lock:
            record = self.templates[int(self.rng.integers(len(self.templates)))]
            seed = int(self.rng.integers(2**31))
        time.sleep(record.length / self.moves_per_s)
        version = self.versions[slot]
        step = max(version, 0)
        stats = self.clients[slot]
        stats.log_event(m.EPISODE_END, step, episode_context(record, version, worker_id))
        stats.log(m.SELFPLAY_MOVES, record.length, step)
        stats.log(m.LEARN_SEARCH_KL, 0.5, step)
        stats.log(m.LEARN_VALUE_EXPLAINED_VARIANCE, 0.1, step)
        stats.log_dict(self.system[slot].sample(), step)
        stats.log(m.WORKER_MOVES_PER_S, self.moves_per_s, step)
        stats.log(m.WORKER_SIMULATIONS_PER_S, self.moves_per_s * self.cfg.mcts.simulations, step)
        stats.deliver()
        versions = np.full(record.length, version, dtype=np.int64)
        return [
            EpisodeRecord(
                **{
                    **{f: getattr(record, f) for f in record.__dataclass_fields__},
                    "seed": seed,
                    "weight_version": version,
                    "weight_versions": versions,
                }
            )
        ]

    def arrivals_since(self, version: int) -> list[tuple[int, float]]:
        """(version, wall time) of every ``set_weights`` of a version >= ``version``."""
        with self.lock:
            return [a for a in self.arrivals if a[0] >= version]


class _Method:
    def __init__(self, call: Any, *bound: Any) -> None:
        self.call, self.bound = call, bound

    def remote(self, *args: Any) -> Any:
        return self.call.remote(*self.bound, *args)


class _Worker:
    """What the pool holds for one simulated worker: ``set_weights.remote`` and
    ``play.remote`` as on a ``SelfPlayWorker`` handle."""

    def __init__(self, host: Any, slot: int, worker_id: int) -> None:
        self.set_weights = _Method(host.set_weights, slot)
        self.play = _Method(host.play, slot, worker_id)


@dataclass
class Probe:
    """What the benchmark watches while one count runs (filled by ``ScalePool`` and the
    progress callback)."""

    seconds: float
    moves_per_s: float
    per_process: int
    positions: int = 0
    step: int = 0
    warm_at: float | None = None
    samples: list[dict[str, float]] = field(default_factory=list)
    published: dict[int, float] = field(default_factory=dict)
    arrivals: list[tuple[int, float]] = field(default_factory=list)

    def progress(self, snapshot: Snapshot) -> None:
        self.step = snapshot.step


PROBE: Probe | None = None
"""The probe of the count being measured: ``train`` builds the pool itself."""


class ScalePool(WorkerPool):
    """The real pool with simulated workers. It also times each publish, and samples the
    driver and the sidecar on a thread, then stops the run with SIGINT, as a user would."""

    def __init__(
        self, run: RunContext, cfg: AlphaTriangleConfig, count: int, *args: Any, **kw: Any
    ) -> None:
        assert PROBE is not None
        self.probe = PROBE
        per = self.probe.per_process
        # A thread per call: each slot's play() sleeps while the others' run.
        host = SimulatedWorkers.options(max_concurrency=2 * per + 2)  # type: ignore[attr-defined]
        self.hosts = [
            host.remote(run, cfg, min(per, count - i), self.probe.moves_per_s, i)
            for i in range(0, count, per)
        ]
        self.waiting_for = set(range(count))
        """Workers that have not returned an episode yet."""
        super().__init__(run, cfg, count, *args, **kw)
        sidecar = ray.get_actor(run.actor_name, namespace=run.namespace)
        thread = threading.Thread(target=self._watch, args=(run, sidecar), daemon=True)
        thread.start()

    def _spawn(self, worker_id: int) -> Any:
        per = self.probe.per_process
        return _Worker(self.hosts[worker_id // per], worker_id % per, worker_id)

    def publish(self, weights: Any, version: int) -> None:
        self.probe.published[version] = time.time()
        super().publish(weights, version)

    def collect(self, timeout: float) -> list[EpisodeRecord]:
        before = dict(self.pending)
        episodes = super().collect(timeout)
        if self.waiting_for:
            self.waiting_for -= {i for ref, i in before.items() if ref not in self.pending}
        self.probe.positions += sum(e.length for e in episodes)
        return episodes

    def stop(self) -> None:
        self.probe.arrivals = [
            a for host in self.hosts for a in ray.get(host.arrivals_since.remote(0))
        ]
        # As ``WorkerPool.stop``, by the processes that hold the simulated workers.
        for host in self.hosts:
            ray.kill(host)
        self.pending.clear()

    def _watch(self, run: RunContext, sidecar: Any) -> None:
        """Every second: counters, the sidecar's lag, CPU and RSS; SIGINT when the window ends."""
        probe = self.probe
        me = psutil.Process()
        me.cpu_percent(None)
        info = ray.get(sidecar.run_info.remote())
        side = psutil.Process(int(info["actor_pid"]))
        side.cpu_percent(None)
        while True:
            time.sleep(1.0)
            now = time.time()
            if probe.warm_at is None:
                if not self.waiting_for and probe.step > 0:
                    probe.warm_at = now
                continue
            info = ray.get(sidecar.run_info.remote())
            written = 0
            if run.run_json.exists():
                spans = RunRecord.load(run.run_json).client_events.values()
                written = sum(high - low for client in spans for low, high in client)
            probe.samples.append(
                {
                    "t": now,
                    "positions": probe.positions,
                    "step": probe.step,
                    "driver_cpu": me.cpu_percent(None),
                    "driver_rss_mb": me.memory_info().rss / 2**20,
                    "sidecar_cpu": side.cpu_percent(None),
                    "sidecar_rss_mb": side.memory_info().rss / 2**20,
                    "events_received": float(info["events"]),
                    "events_written": float(written),
                }
            )
            if now - probe.warm_at >= probe.seconds:
                os.kill(os.getpid(), signal.SIGINT)
                return


def summarise(probe: Probe, workers: int, batch_size: int) -> dict[str, float]:
    """The row of one worker count, over the samples of its window."""
    first, last = probe.samples[0], probe.samples[-1]
    span = last["t"] - first["t"]
    positions = (last["positions"] - first["positions"]) / span
    samples = (last["step"] - first["step"]) * batch_size / span
    # Every version the learner published (version 0 went out before the workers had started).
    window = [v for v in probe.published if v > 0]
    reached: dict[int, list[float]] = {}
    for version, at in probe.arrivals:
        reached.setdefault(version, []).append(at)
    latencies = [
        max(reached[v]) - probe.published[v] for v in window if len(reached.get(v, [])) == workers
    ]
    lag = [s["events_received"] - s["events_written"] for s in probe.samples]
    body = probe.samples[1:] or probe.samples
    return {
        "workers": workers,
        "positions_per_s": positions,
        "samples_per_s": samples,
        "replay_ratio": samples / positions if positions else float("nan"),
        "offered_positions_per_s": workers * probe.moves_per_s,
        "publish_latency_median_s": statistics.median(latencies) if latencies else float("nan"),
        "publish_latency_max_s": max(latencies) if latencies else float("nan"),
        "sidecar_lag_mean_events": statistics.fmean(lag),
        "sidecar_lag_max_events": max(lag),
        "driver_cpu_percent": statistics.fmean(s["driver_cpu"] for s in body),
        "driver_rss_mb": max(s["driver_rss_mb"] for s in probe.samples),
        "sidecar_cpu_percent": statistics.fmean(s["sidecar_cpu"] for s in body),
        "sidecar_rss_mb": max(s["sidecar_rss_mb"] for s in probe.samples),
    }


def measure(
    address: str, root: Path, workers: int, args: argparse.Namespace, label: str
) -> dict[str, float]:
    """One ``train`` run with ``workers`` simulated workers (``label`` "before": the learner
    on a thread per core); its row."""
    global PROBE
    PROBE = Probe(args.seconds, args.moves_per_s, args.per_process)
    train: dict[str, Any] = {"num_workers": workers, "max_steps": 10**9}
    if label == "before":
        train["learner_threads"] = os.cpu_count()
    # No periodic evaluation: its actor would play real games on the same cores.
    cfg = AlphaTriangleConfig.model_validate({"train": train, "eval": {"every_steps": 0}})
    run = app_context(root).run(f"scale-{label}-{workers}")
    driver.train(
        cfg,
        run,
        address=address,
        on_start=lambda _: None,
        on_progress=PROBE.progress,
        pool=ScalePool,
    )
    return {**summarise(PROBE, workers, cfg.train.batch_size), "path": label}  # type: ignore[dict-item]


TABLE_COLUMNS = (
    ("workers", "workers", "{:.0f}"),
    ("path", "learner", "{}"),
    ("offered_positions_per_s", "offered pos/s", "{:,.0f}"),
    ("positions_per_s", "ingested pos/s", "{:,.0f}"),
    ("samples_per_s", "trained samples/s", "{:,.0f}"),
    ("replay_ratio", "replay ratio", "{:.2f}"),
    ("publish_latency_median_s", "publish latency median / max s", "{:.3f}"),
    ("sidecar_lag_mean_events", "sidecar lag mean / max events", "{:,.0f}"),
    ("driver_cpu_percent", "driver CPU %", "{:.0f}"),
    ("driver_rss_mb", "driver RSS MB", "{:,.0f}"),
    ("sidecar_cpu_percent", "sidecar CPU %", "{:.0f}"),
    ("sidecar_rss_mb", "sidecar RSS MB", "{:,.0f}"),
)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| " + " | ".join(title for _, title, _ in TABLE_COLUMNS) + " |",
        "|" + "---|" * len(TABLE_COLUMNS),
    ]
    for row in rows:
        cells = []
        for key, _, fmt in TABLE_COLUMNS:
            cell = fmt.format(row[key])
            if key == "publish_latency_median_s":
                cell += " / " + fmt.format(row["publish_latency_max_s"])
            if key == "sidecar_lag_mean_events":
                cell += " / " + fmt.format(row["sidecar_lag_max_events"])
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label in sorted({r["path"] for r in rows}):
        mine = [r for r in rows if r["path"] == label]
        w = [r["workers"] for r in mine]
        left.plot(w, [r["positions_per_s"] for r in mine], "o-", label=f"ingested pos/s ({label})")
        left.plot(
            w,
            [r["samples_per_s"] / 4 for r in mine],
            "s--",
            label=f"trained samples/s / 4 ({label})",
        )
        right.plot(
            w, [r["driver_cpu_percent"] for r in mine], "o-", label=f"driver CPU % ({label})"
        )
        right.plot(
            w, [r["sidecar_cpu_percent"] for r in mine], "s--", label=f"sidecar CPU % ({label})"
        )
    w = sorted({r["workers"] for r in rows})
    left.plot(
        w,
        [x * rows[0]["offered_positions_per_s"] / rows[0]["workers"] for x in w],
        ":",
        color="grey",
        label="offered pos/s",
    )
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("simulated self-play workers")
        ax.legend(fontsize=7)
    left.set_yscale("log")
    left.set_title("throughput")
    right.set_title("CPU (100 = one core)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def start_cluster(cpus: int, temp_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A local Ray head with ``cpus`` logical CPUs, in its own session (ended by its id).

    Its own ``temp_dir``: ``ray start`` records the newest cluster in ``<temp dir>/
    ray_current_cluster``, and a plain ``ray.init()`` of any other program on the machine
    would join that cluster instead of starting its own.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_cli = str(Path(sys.executable).parent / "ray")
    head = subprocess.Popen(
        [
            ray_cli,
            "start",
            "--head",
            "--block",
            f"--port={port}",
            f"--num-cpus={cpus}",
            "--num-gpus=0",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp_dir}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return head, f"127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=list(DEFAULT_WORKERS))
    parser.add_argument("--seconds", type=float, default=20.0, help="Measured seconds per count.")
    parser.add_argument("--moves-per-s", type=float, default=75.0, help="Per simulated worker.")
    parser.add_argument(
        "--per-process", type=int, default=16, help="Simulated workers per process."
    )
    parser.add_argument(
        "--before",
        type=int,
        nargs="*",
        default=[],
        help="Counts also run first with the learner on a thread per core, as before.",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="scale") as tmp:
        head, address = start_cluster(max(args.workers) + 4, Path(tmp) / "ray")
        try:
            for workers in args.workers:
                for label in ["before", "now"] if workers in args.before else ["now"]:
                    started = time.monotonic()
                    row = measure(address, Path(tmp) / "data", workers, args, label)
                    rows.append(row)
                    print(
                        f"{workers} workers ({label}): {row['positions_per_s']:,.0f} pos/s, "
                        f"{row['samples_per_s']:,.0f} samples/s, "
                        f"{time.monotonic() - started:.0f} s",
                        flush=True,
                    )
        finally:
            os.killpg(head.pid, signal.SIGTERM)
            head.wait()
    print(table(rows))
    (args.out / "scale.json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2)
    )
    plot(rows, args.out / "scale.png")


if __name__ == "__main__":
    main()
