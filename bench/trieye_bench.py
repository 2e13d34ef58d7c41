"""Throughput of trieye's batched client against one Ray RPC per event, in the same Ray session.

    .venv/bin/python bench/trieye_bench.py [--events 1000000] [--baseline-events 20000]

Prints, for both paths: what one call costs the caller (for the client, also the local append
alone, without its share of shipping and back-pressure), the sustained events/s until the
actor has ingested everything and written its sinks, and how many events were queued at most.
The batched client's queue is bounded by its in-flight window; the baseline's is not.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import ray

import trieye
from trieye import MetricSpec, RawMetricEvent, RunContext, TrieyeConfig

CONFIG = TrieyeConfig(
    metrics=[
        MetricSpec(name="episode/score_mean", source="episode_end", context_key="score"),
        MetricSpec(
            name="episode/score_max", source="episode_end", context_key="score", aggregation="max"
        ),
        MetricSpec(name="episode/per_s", source="episode_end", aggregation="rate"),
    ],
    flush_every_seconds=1.0,
)
NAMES = [f"loss/part_{i}" for i in range(9)]


def bench_batched(ctx: RunContext, events: int) -> dict[str, float]:
    trieye.start_actor(ctx, CONFIG)
    client = trieye.connect(ctx)
    client.log("warmup", 0.0, 0)
    client.flush()
    start = time.perf_counter()
    for i in range(events):
        if i % 10 == 9:
            client.log_event("episode_end", i, {"score": float(i % 7), "length": 20})
        else:
            client.log(NAMES[i % 9], 0.5, i)
    logged = time.perf_counter()
    client.flush()  # returns once the actor has ingested every batch and written the sinks
    done = time.perf_counter()
    info = client.run_info()
    assert info["events"] == events + 1, info
    batch = CONFIG.client_batch_size
    # The append alone: runs of batch-1 calls that never reach the shipping threshold.
    appends = 0.0
    for round_ in range(100):
        client.flush()
        begin = time.perf_counter()
        for i in range(batch - 1):
            client.log(NAMES[i % 9], 0.5, round_)
        appends += time.perf_counter() - begin
    client.shutdown_actor()
    return {
        "append_ns": appends / (100 * (batch - 1)) * 1e9,
        "caller_ns": (logged - start) / events * 1e9,
        "events_per_s": events / (done - start),
        "max_queue": client._max_inflight_seen * batch,
        "seconds": done - start,
    }


def bench_one_rpc_per_event(ctx: RunContext, events: int) -> dict[str, float]:
    actor = trieye.start_actor(ctx, CONFIG)
    # The naive path: the actor's own ingest, called once per event.
    ray.get(
        actor.ingest.remote([RawMetricEvent(name="warmup", value=0.0, global_step=0).to_wire()])
    )
    start = time.perf_counter()
    refs = [
        actor.ingest.remote([RawMetricEvent(name=NAMES[i % 9], value=0.5, global_step=i).to_wire()])
        for i in range(events)
    ]
    submitted = time.perf_counter()
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
    queued = events - len(ready)
    ray.get(refs)
    ray.get(actor.flush.remote())
    done = time.perf_counter()
    ray.get(actor.shutdown.remote())
    ray.kill(actor)
    return {
        "append_ns": float("nan"),
        "caller_ns": (submitted - start) / events * 1e9,
        "events_per_s": events / (done - start),
        "max_queue": queued,
        "seconds": done - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--baseline-events", type=int, default=20_000)
    args = parser.parse_args()
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        with tempfile.TemporaryDirectory() as root:
            batched = bench_batched(RunContext(Path(root), "bench", "batched"), args.events)
            naive = bench_one_rpc_per_event(
                RunContext(Path(root), "bench", "one-rpc"), args.baseline_events
            )
    finally:
        ray.shutdown()
    ratio = batched["events_per_s"] / naive["events_per_s"]
    rows = [
        ("trieye client (batched)", args.events, batched),
        ("one RPC per event", args.baseline_events, naive),
    ]
    print(
        f"\n{'path':<26}{'events':>10}{'append ns':>11}{'caller ns/call':>16}"
        f"{'events/s':>12}{'max queued':>12}"
    )
    for label, count, result in rows:
        print(
            f"{label:<26}{count:>10,}{result['append_ns']:>11,.0f}{result['caller_ns']:>16,.0f}"
            f"{result['events_per_s']:>12,.0f}{result['max_queue']:>12,.0f}"
        )
    print(f"\nspeed-up of the batched client: {ratio:.1f}x (floor: 20x, and >= 50,000 events/s)")
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "trieye_bench.json").write_text(
        json.dumps({"batched": batched, "one_rpc_per_event": naive, "ratio": ratio}, indent=2)
    )


if __name__ == "__main__":
    main()
