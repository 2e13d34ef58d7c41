"""Data-parallel training with PyTorch DDP, for a learner that one device cannot keep up with.

One ``Learner`` in the driver stays the default. ``DataParallelLearner`` is one replica of a
learner spread over several processes (one per GPU, or a few CPU processes with the gloo
backend): each replica trains on its share of every batch (``shard``), and
``torch.nn.parallel.DistributedDataParallel`` averages the gradients over the replicas in the
backward pass, so the replicas take the same update and hold the same weights, those of one
learner trained on the whole batch (up to the order of floating-point sums). The process group
is set up by whoever starts the processes (``torch.distributed.init_process_group``, e.g.
``torchrun`` or Ray Train's ``TorchTrainer``), before the replicas are built.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from alphatriangle.core.buffer import Batch
from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.learner import Learner
from alphatriangle.core.optimization import TrainStepResult
from alphatriangle.core.training import train_step


def shard(batch: Batch, rank: int, world_size: int) -> Batch:
    """Replica ``rank``'s contiguous share of ``batch``, whose size ``world_size`` divides:
    equal shares, so that the mean of the replicas' mean losses is the whole batch's."""
    size = len(batch.indices)
    if size % world_size:
        raise ValueError(f"a batch of {size} does not split into {world_size} equal shares")
    part = slice(rank * size // world_size, (rank + 1) * size // world_size)
    return Batch(**{f.name: getattr(batch, f.name)[part] for f in dataclasses.fields(Batch)})


class DataParallelLearner(Learner):
    """A ``Learner`` whose gradient steps go through a DDP replica of its network.

    Build one in every process of an initialised process group, with the same config: DDP
    copies rank 0's weights to the others at construction. ``step(batch)`` takes this
    replica's share of the batch. AlphaZero only (MuZero's step unrolls the model through
    methods that DDP's forward does not wrap).
    """

    def __init__(self, cfg: AlphaTriangleConfig, device: str | torch.device = "cpu") -> None:
        if cfg.algorithm != "alphazero":
            raise ValueError(f"data-parallel training supports alphazero, not {cfg.algorithm}")
        if not dist.is_initialized():
            raise RuntimeError(
                "call torch.distributed.init_process_group(...) in every replica's process "
                "before building a DataParallelLearner"
            )
        super().__init__(cfg, device)
        on_gpu = self.device.type == "cuda"
        self.replica = DistributedDataParallel(
            self.model, device_ids=[self.device] if on_gpu else None
        )

    def step(self, batch: Batch) -> dict[str, float]:
        """One gradient step on this replica's share; its metrics are those of the share.
        ``counters.samples_trained`` counts the whole batch, every replica's share."""
        metrics = super().step(batch)
        # Rank 0's counters are the run's (its checkpoint's): they pace the replay ratio.
        self.counters.samples_trained += len(batch.indices) * (dist.get_world_size() - 1)
        return metrics

    def _gradient_step(self, batch: Batch) -> TrainStepResult:
        # AlphaZero's step, handed the replica: its backward all-reduces the gradients.
        return train_step(
            self.replica, self.optimizer, self.scheduler, batch, self.cfg.train, self.device
        )
