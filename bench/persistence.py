"""Checkpoint save and restore through the real trieye sidecar, with a full replay buffer.

Run: ``.venv/bin/python bench/persistence.py [--positions 100000] [--repeats 3]`` (about a
minute). Starts a local Ray (2 CPUs) and the run's ``TrieyeActor`` exactly as ``alphatriangle
train`` does, fills a real ``ReplayBuffer`` with random but valid positions, takes one gradient
step so that the AdamW moments exist, then per repeat:

- save: what the learner pays (building the state dicts, then ``client.save_checkpoint``, which
  copies both into the object store and returns an ObjectRef) and the wall time until the
  actor has written and verified the files (``ray.get`` of that ref);
- restore: ``client.load_latest()`` (the actor verifies sha256 and loads; the arrays come back
  through the object store) and loading the result into a fresh buffer, model and optimizer.

Prints the median of each over the repeats and the file sizes; writes
``bench/results/persistence.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch

import trieye
from alphatriangle.app.runs import run_context
from alphatriangle.core.buffer import PositionBuffer
from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.features import feature_spec
from alphatriangle.core.learner import Learner
from alphatriangle.core.selfplay import EpisodeRecord
from alphatriangle.distributed.metrics import metric_config

EPISODE_LENGTH = 100


def random_episode(rng: np.random.Generator, length: int, seed: int) -> EpisodeRecord:
    """An episode of random positions that respects the feature contract: 0/1 planes where the
    features are 0/1, the ``valid_s`` planes equal to the legal mask, a policy that sums to 1
    over legal actions only, and non-negative score gains."""
    spec = feature_spec()
    channels, rows, cols = spec.grid_shape
    valid = rng.random((length, spec.action_dim)) < 0.3
    valid[:, 0] = True  # every stored position has at least one legal move
    grid = np.empty((length, channels, rows, cols), dtype=np.float32)
    grid[:, :3] = rng.random((length, 3, rows, cols)) < 0.5
    grid[:, 3:6] = rng.random((length, 3, rows, cols))
    grid[:, 6:] = valid.reshape(length, spec.num_slots, rows, cols)
    policy = rng.random((length, spec.action_dim)) * valid
    policy /= policy.sum(axis=1, keepdims=True)
    rewards = rng.integers(0, 4, size=length).astype(np.float32)
    scores = np.concatenate([[0.0], np.cumsum(rewards)]).astype(np.float32)
    return EpisodeRecord(
        grid=grid,
        other=rng.random((length, spec.other_dim)).astype(np.float32),
        policy=policy.astype(np.float32),
        valid_mask=valid,
        scores=scores,
        rewards=rewards,
        score=float(scores[-1]),
        length=length,
        triangles_cleared=0,
        simulations=0,
        search_depth=0.0,
        seed=seed,
    )


def fill(buffer: PositionBuffer[Any], positions: int) -> PositionBuffer[Any]:
    rng = np.random.default_rng(0)
    seed = 0
    while len(buffer) < positions:
        length = min(EPISODE_LENGTH, positions - len(buffer))
        buffer.add_episode(random_episode(rng, length, seed))
        seed += 1
    return buffer


def save_once(
    client: trieye.TrieyeClient, step: int, learner: Learner, buffer_dir: Path
) -> dict[str, float]:
    """One checkpoint with buffer, timed the way the training loop pays for it."""
    start = time.perf_counter()
    learner.counters.step = step
    state = learner.state_dict()
    snapshot = learner.buffer.state_dict()
    built = time.perf_counter()
    ref = client.save_checkpoint(step, state, buffer=snapshot)
    returned = time.perf_counter()
    path = Path(ray.get(ref))
    written = time.perf_counter()
    buffer_file = buffer_dir / f"buffer_{step:012d}.npz"
    return {
        "build_state_s": built - start,
        "save_call_s": returned - built,
        "learner_blocked_s": returned - start,
        "save_wall_s": written - start,
        "checkpoint_bytes": path.stat().st_size,
        "buffer_bytes": buffer_file.stat().st_size,
    }


def restore_once(client: trieye.TrieyeClient, cfg: AlphaTriangleConfig) -> dict[str, float]:
    """``load_latest`` through the actor, then into a fresh learner as a resumed run does."""
    start = time.perf_counter()
    loaded = client.load_latest()
    fetched = time.perf_counter()
    if loaded is None or loaded.buffer is None:
        raise SystemExit("load_latest() found no checkpoint with a buffer: the save went wrong")
    learner = Learner(cfg)
    buffer = learner.buffer
    began = time.perf_counter()
    learner.load_state_dict(loaded.state)
    learner_loaded = time.perf_counter()
    buffer.load_state_dict(loaded.buffer)
    done = time.perf_counter()
    return {
        "load_latest_s": fetched - start,
        "model_optimizer_load_s": learner_loaded - began,
        "buffer_load_state_dict_s": done - learner_loaded,
        "restore_total_s": (fetched - start) + (done - began),
        "restored_positions": len(buffer),
    }


def _spread(rows: list[dict[str, float]], key: str) -> str:
    values = [row[key] for row in rows]
    return f"{statistics.median(values):.3f} s ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=100_000, help="replay buffer fill")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=Path("bench/results/persistence.json"))
    args = parser.parse_args()

    cfg = AlphaTriangleConfig()
    if args.positions > cfg.train.buffer_capacity:
        cfg = cfg.model_copy(
            update={"train": cfg.train.model_copy(update={"buffer_capacity": args.positions})}
        )
    torch.manual_seed(0)
    learner = Learner(cfg)
    buffer = fill(learner.buffer, args.positions)
    # One real step, so the optimizer state holds AdamW's moments as in any saved run.
    learner.step(buffer.sample(cfg.train.batch_size))
    params = sum(p.numel() for p in learner.model.parameters())

    saves: list[dict[str, float]] = []
    restores: list[dict[str, float]] = []
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as root:
            ctx = run_context("persistence", Path(root))
            trieye.start_actor(ctx, metric_config())
            client = trieye.connect(ctx)
            # A training run logs its params before any save, which opens MLflow (seconds, on
            # sqlite): do the same so that the first save measures a save, not that set-up.
            client.log_params({"bench": "persistence"})
            for step in range(1, args.repeats + 1):
                saves.append(save_once(client, step, learner, ctx.buffer_dir))
                restores.append(restore_once(client, cfg))
                restored = restores[-1]["restored_positions"]
                if restored != len(buffer):
                    raise SystemExit(f"restored {restored:.0f} positions, saved {len(buffer)}")
            client.shutdown_actor()
    finally:
        ray.shutdown()

    def median(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    results: dict[str, Any] = {
        "machine_cpus": os.cpu_count(),
        "buffer_positions": len(buffer),
        "model_parameters": params,
        "repeats": args.repeats,
        **{key: round(median(saves, key), 4) for key in saves[0]},
        **{key: round(median(restores, key), 4) for key in restores[0]},
        "runs": {"save": saves, "restore": restores},
    }
    print(
        f"\ncheckpoint + buffer of {len(buffer):,} positions through the trieye sidecar, "
        f"median (min-max) of {args.repeats} ({os.cpu_count()} CPUs)"
    )
    print("| measure | value |\n|---|---|")
    for key, label in [
        ("build_state_s", "learner blocked: build state dicts"),
        ("save_call_s", "learner blocked: save_checkpoint call"),
        ("learner_blocked_s", "learner blocked: total"),
        ("save_wall_s", "save wall time until ray.get(ref)"),
    ]:
        print(f"| {label} | {_spread(saves, key)} |")
    print(f"| checkpoint file (.pt) | {results['checkpoint_bytes'] / 1e6:.2f} MB |")
    print(f"| buffer file (.npz) | {results['buffer_bytes'] / 1e6:.1f} MB |")
    for key, label in [
        ("load_latest_s", "restore: client.load_latest()"),
        ("model_optimizer_load_s", "restore: model+optimizer load_state_dict"),
        ("buffer_load_state_dict_s", "restore: buffer.load_state_dict"),
        ("restore_total_s", "restore: total"),
    ]:
        print(f"| {label} | {_spread(restores, key)} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
