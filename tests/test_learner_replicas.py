"""Learner replicas as the trainer runs them (``distributed.learner_replica``): the driver's
learner as rank 0 with a real Ray actor as rank 1, against one learner on the same batches.
The real ``alphatriangle train`` with replicas is in ``test_train_cli.py``."""

from __future__ import annotations

from typing import TypeVar

import pytest
import ray
import torch

from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.data_parallel import DataParallelLearner
from alphatriangle.core.learner import Learner
from alphatriangle.distributed.learner_replica import LearnerReplicas
from alphatriangle.distributed.workers import learner_threads, worker_count
from alphatriangle.errors import UsageError
from tests.test_data_parallel import BATCH, _episodes

L = TypeVar("L", bound=Learner)

WARM, STEPS = 2, 3


def _filled(learner: L) -> L:
    for episode in _episodes():
        learner.add_episode(episode)
    return learner


def _close_to_one_learner(driver: dict[str, torch.Tensor], alone: dict[str, torch.Tensor]) -> None:
    for name, tensor in alone.items():
        if name == "policy_out.bias":
            # Its true gradient is 0 (see tests/test_data_parallel.py): Adam scales rounding
            # noise up to about a learning-rate step each step of the warm-up.
            bound = sum(1e-3 * (k + 1) / 50 for k in range(STEPS))
            assert float((driver[name] - tensor).abs().max()) <= bound
            continue
        torch.testing.assert_close(driver[name], tensor, rtol=1e-5, atol=1e-6)


def test_the_driver_and_a_replica_actor_train_the_weights_of_one_learner() -> None:
    torch.set_num_threads(1)
    cfg = AlphaTriangleConfig.model_validate({"train": {"learner_replicas": 2}})
    # A checkpoint of step WARM, to resume from: Adam moments and a warm-up under way, which
    # DDP's broadcast at construction does not copy.
    warm = _filled(Learner(cfg))
    for _ in range(WARM):
        warm.step(warm.buffer.sample(BATCH))
    checkpoint = warm.state_dict()

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)
    try:
        # As the driver does: start the replicas, build rank 0, hand them its state.
        replicas = LearnerReplicas(cfg, 2, gpu=False)
        rank0 = _filled(DataParallelLearner(cfg))
        initial = rank0.weights()
        replicas.load(rank0.state_dict())
        batches = [rank0.buffer.sample(BATCH) for _ in range(STEPS)]
        for batch in batches:
            metrics = replicas.step(rank0, batch)
        new_run = (rank0.weights(), ray.get(replicas.actors[0].weights.remote()))
        new_run_trained = rank0.counters.samples_trained

        rank0.load_state_dict(checkpoint)
        replicas.load(rank0.state_dict())
        for _ in range(STEPS):
            replicas.step(rank0, rank0.buffer.sample(BATCH))
        resumed = (rank0.weights(), ray.get(replicas.actors[0].weights.remote()))
        resumed_counters = rank0.counters
        replicas.close()
    finally:
        ray.shutdown()
    assert "loss/policy" in metrics
    # The whole batch counts as trained, as for one learner: it paces the replay ratio.
    assert new_run_trained == STEPS * BATCH
    assert (resumed_counters.step, resumed_counters.samples_trained) == (
        WARM + STEPS,
        (WARM + STEPS) * BATCH,
    )
    for driver, replica in (new_run, resumed):
        # Both ranks took the same all-reduced updates from the same state: after a resume
        # only if the replica took the checkpoint's optimizer state and schedule too.
        for name, tensor in driver.items():
            assert torch.equal(tensor, replica[name]), name

    single = Learner(cfg)
    for batch in batches:
        single.step(batch)
    alone = single.weights()
    # From a fresh start: one learner's weights up to the order of the sums. (From a resumed
    # Adam state, even a permuted batch moves weights by ~5e-5: its small second moments
    # scale rounding noise up.)
    _close_to_one_learner(new_run[0], alone)
    assert any(not torch.equal(initial[n], alone[n]) for n in alone)
    assert any(not torch.equal(resumed[0][n], checkpoint["model"][n]) for n in alone)


def test_replicas_take_cpus_from_the_workers_and_threads_from_the_learner() -> None:
    cfg = AlphaTriangleConfig.model_validate({"train": {"learner_replicas": 4}}).train
    # 8 CPUs, 3 to replicas: ceil(5 / (1 + 0.2 / 4)) = ceil(4.76) workers.
    assert worker_count(cfg, cpus=8) == 5
    assert learner_threads(cfg, node_cpus=16, workers=10) == 3
    with pytest.raises(
        UsageError,
        match=r"has 5 CPUs and each self-play worker takes one, as does each of the 3 learner "
        r"replicas beyond the driver's; use at most 2",
    ):
        worker_count(cfg.model_copy(update={"num_workers": 3}), cpus=5)
    with pytest.raises(UsageError, match="learner_replicas = 4: the Ray cluster has 3 CPUs"):
        worker_count(cfg, cpus=3)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"train": {"learner_replicas": 3}}, r"batch_size \(128\) does not split into"),
        ({"train": {"learner_replicas": 2, "prioritized_replay": True}}, "prioritized_replay"),
        (
            {"train": {"learner_replicas": 2, "augment_symmetries": ["rot120"]}},
            "augment_symmetries is not supported",
        ),
        (
            {"algorithm": "muzero", "train": {"learner_replicas": 2}},
            "learner_replicas > 1 applies to AlphaZero only",
        ),
    ],
)
def test_what_replicas_do_not_support_is_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AlphaTriangleConfig.model_validate(settings)
