"""Data-parallel training (``core.data_parallel``): two real gloo processes of PyTorch DDP
against one learner on the same data."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from alphatriangle.core.buffer import Batch
from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.data_parallel import DataParallelLearner, shard
from alphatriangle.core.features import feature_spec
from alphatriangle.core.learner import Learner
from alphatriangle.core.selfplay import EpisodeRecord

STEPS = 3
BATCH = 16


def _episodes() -> list[EpisodeRecord]:
    """Four episodes of the real shapes, the same in every process."""
    spec = feature_spec()
    rng = np.random.default_rng(7)
    out = []
    for t in (20, 25, 30, 35):
        policy = rng.random((t, spec.action_dim), dtype=np.float32)
        rewards = rng.integers(0, 3, size=t).astype(np.float32)
        scores = np.concatenate([[0.0], np.cumsum(rewards)]).astype(np.float32)
        out.append(
            EpisodeRecord(
                grid=rng.random((t, *spec.grid_shape), dtype=np.float32),
                other=rng.random((t, spec.other_dim), dtype=np.float32),
                policy=policy / policy.sum(axis=1, keepdims=True),
                valid_mask=np.ones((t, spec.action_dim), dtype=bool),
                scores=scores,
                rewards=rewards,
                score=float(scores[-1]),
                length=t,
                triangles_cleared=0,
                simulations=0,
                search_depth=0.0,
                seed=t,
            )
        )
    return out


def _train(learner: Learner, rank: int | None = None, world: int = 1) -> None:
    for episode in _episodes():
        learner.add_episode(episode)
    for _ in range(STEPS):
        # Every replica draws the same whole batch (same seed, same buffer), then its share.
        batch = learner.buffer.sample(BATCH)
        learner.step(batch if rank is None else shard(batch, rank, world))


def _replica(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    learner = DataParallelLearner(AlphaTriangleConfig())
    _train(learner, rank, world)
    torch.save(learner.weights(), Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_two_gloo_replicas_hold_the_weights_of_one_learner_on_the_whole_batch(
    tmp_path: Path,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(  # type: ignore[attr-defined,no-untyped-call]  # torch's untyped re-export
        _replica, args=(2, port, str(tmp_path)), nprocs=2, join=True
    )
    replicas = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]

    torch.set_num_threads(1)
    single = Learner(AlphaTriangleConfig())
    initial = single.weights()
    _train(single)
    alone = single.weights()

    for name, tensor in alone.items():
        # The replicas took the same all-reduced update: bit for bit the same weights.
        assert torch.equal(replicas[0][name], replicas[1][name]), name
        # One learner on the whole batch: the same update up to the order of the sums (the
        # mean over two shards' means against one mean over the batch).
        if name == "policy_out.bias":
            # One bias added to every logit: the softmax ignores it, its true gradient is 0,
            # and Adam scales the rounding noise of either run up to a step of about the
            # learning rate (1e-3 x step / 50 in the warm-up).
            bound = sum(1e-3 * (k + 1) / 50 for k in range(STEPS))
            assert float((replicas[0][name] - tensor).abs().max()) <= bound
            continue
        torch.testing.assert_close(replicas[0][name], tensor, rtol=1e-5, atol=1e-6)
    # Training moved the weights: the comparison above is not of untouched initial weights.
    assert any(not torch.equal(initial[n], alone[n]) for n in alone)


def test_a_batch_splits_into_equal_contiguous_shares() -> None:
    grid, other, policy, valid_mask = (np.arange(6 * k).reshape(6, k) for k in (1, 2, 3, 4))
    batch = Batch(
        grid,
        other,
        policy,
        valid_mask,
        value_target=np.arange(6.0),
        weights=np.ones(6),
        indices=np.arange(10, 16),
    )
    second = shard(batch, 1, 3)
    assert second.indices.tolist() == [12, 13]
    assert second.other.tolist() == [[4, 5], [6, 7]]
    with pytest.raises(ValueError, match="a batch of 6 does not split into 4 equal shares"):
        shard(batch, 0, 4)
