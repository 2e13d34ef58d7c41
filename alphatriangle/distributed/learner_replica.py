"""Learner replicas beyond the driver's: Ray actors that train their share of every batch
with the driver's learner (rank 0) in one ``torch.distributed`` process group (PyTorch DDP,
``core.data_parallel``)."""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

import ray
import torch
import torch.distributed as dist

from alphatriangle.core.buffer import Batch
from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.data_parallel import DataParallelLearner, shard

GROUP_TIMEOUT = timedelta(minutes=5)
"""How long a rank waits for the others to join, or for a step's all-reduce: a replica that
died leaves the driver waiting this long, then failing."""


def _join(rank: int, world: int, address: str, port: int, gpu: bool) -> None:
    dist.init_process_group(
        "nccl" if gpu else "gloo",
        init_method=f"tcp://{address}:{port}",
        rank=rank,
        world_size=world,
        timeout=GROUP_TIMEOUT,
    )


@ray.remote(num_cpus=1)
class LearnerReplica:
    """Rank ``rank`` of the learner's process group: a ``DataParallelLearner`` without a
    buffer of its own (the driver samples and sends it its share)."""

    def __init__(
        self, cfg: AlphaTriangleConfig, rank: int, world: int, address: str, port: int, gpu: bool
    ) -> None:
        # The actor holds one Ray CPU: more threads would spin on cores others hold.
        torch.set_num_threads(1)
        _join(rank, world, address, port, gpu)
        # Built in every rank at once: DDP's construction broadcasts rank 0's weights.
        self.learner = DataParallelLearner(cfg, "cuda" if gpu else "cpu")

    def load(self, state: dict[str, Any]) -> None:
        """Take rank 0's whole learner state: weights, optimizer, schedule, counters."""
        self.learner.load_state_dict(state)

    def step(self, batch: Batch) -> None:
        """Train this replica's share of a batch, with the other ranks."""
        self.learner.step(batch)

    def weights(self) -> dict[str, torch.Tensor]:
        return self.learner.weights()


class LearnerReplicas:
    """The driver's side of ``count`` learner replicas: it starts the ``count - 1`` actors and
    joins their process group as rank 0, so that a ``DataParallelLearner`` built next in the
    driver is rank 0's. ``close()`` leaves the group."""

    def __init__(self, cfg: AlphaTriangleConfig, count: int, gpu: bool) -> None:
        address = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        with socket.socket() as s:
            s.bind((address, 0))
            port = s.getsockname()[1]
        self.count = count
        self.gpus = count - 1 if gpu else 0
        """The cluster's GPUs the replicas hold."""
        actor = LearnerReplica.options(num_gpus=1 if gpu else 0)  # type: ignore[attr-defined]
        self.actors = [
            actor.remote(cfg, rank, count, address, port, gpu) for rank in range(1, count)
        ]
        _join(0, count, address, port, gpu)

    def load(self, state: dict[str, Any]) -> None:
        """Every replica takes rank 0's learner state (a resumed run's checkpoint): DDP's
        broadcast at construction copied only the weights, not the optimizer's moments or the
        learning-rate schedule."""
        ref = ray.put(state)
        ray.get([a.load.remote(ref) for a in self.actors])

    def step(self, learner: DataParallelLearner, batch: Batch) -> dict[str, float]:
        """One gradient step of the whole ``batch``: share k to replica k, share 0 to the
        driver's ``learner`` meanwhile; the metrics are rank 0's (of its share)."""
        done = [
            a.step.remote(ray.put(shard(batch, rank, self.count)))
            for rank, a in enumerate(self.actors, start=1)
        ]
        metrics = learner.step(shard(batch, 0, self.count))
        ray.get(done)
        return metrics

    def close(self) -> None:
        """Leave the process group and stop the actors."""
        dist.destroy_process_group()
        for a in self.actors:
            ray.kill(a)
