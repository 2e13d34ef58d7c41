"""``SelfPlayWorker``: a Ray actor that plays self-play episodes with its own CPU network copy."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import ray
import torch

from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.network import AlphaTriangleNet
from alphatriangle.core.search import NetworkEvaluator
from alphatriangle.core.selfplay import TRAINING_SEED_FLOOR, EpisodeRecord, play_episode
from trieye import RunContext, connect


@ray.remote(num_cpus=1, max_restarts=0)
class SelfPlayWorker:
    """Plays one episode per ``play()`` call with the most recently published weights.

    Actor tasks run in submission order, so ``set_weights`` calls queued by the driver take
    effect between episodes, never in the middle of one.
    """

    def __init__(
        self, run: RunContext, cfg: AlphaTriangleConfig, worker_id: int, seed_entropy: list[int]
    ) -> None:
        # One intra-op thread per worker: self-play parallelism comes from running more workers.
        torch.set_num_threads(1)
        self.cfg = cfg
        self.worker_id = worker_id
        self.model = AlphaTriangleNet(cfg.model).eval()
        self.evaluator = NetworkEvaluator(self.model, device="cpu")
        self.weight_version = -1
        self.rng = np.random.default_rng([*seed_entropy, worker_id])
        self.stats = connect(run)
        self.episodes = 0

    def set_weights(self, weights: dict[str, torch.Tensor], version: int) -> int:
        """Load published weights (the driver passes one ``ray.put`` reference to all workers)."""
        self.evaluator.load_weights(weights)
        self.weight_version = version
        return version

    def play(self) -> EpisodeRecord:
        """Play one self-play episode and report it to the sidecar as an ``episode_end`` event."""
        seed = int(self.rng.integers(TRAINING_SEED_FLOOR, 2**32 - 1))
        start = time.perf_counter()
        record = play_episode(self.evaluator, self.cfg.mcts, seed, noise=True)
        elapsed = time.perf_counter() - start
        record = dataclasses.replace(record, weight_version=self.weight_version)
        self.episodes += 1
        step = max(self.weight_version, 0)
        self.stats.log_event(
            "episode_end",
            step,
            {
                "score": record.score,
                "length": record.length,
                "triangles_cleared": record.triangles_cleared,
                "simulations": record.simulations,
                "weight_version": self.weight_version,
                "worker": self.worker_id,
            },
        )
        self.stats.log("selfplay/moves", record.length, step)
        self.stats.log("worker/moves_per_s", record.length / elapsed, step)
        self.stats.log("worker/simulations_per_s", record.simulations / elapsed, step)
        # One small RPC per episode, so that killing a worker loses nothing already played.
        self.stats.deliver()
        return record

    def info(self) -> dict[str, Any]:
        """Identity and progress, for diagnostics."""
        return {
            "worker_id": self.worker_id,
            "episodes": self.episodes,
            "weight_version": self.weight_version,
        }
