"""Real self-play worker actors with several games at once, on a real Ray and sidecar."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray

from alphatriangle.app.runs import run_context
from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.network import AlphaTriangleNet
from alphatriangle.core.selfplay import TRAINING_SEED_FLOOR, EpisodeRecord
from alphatriangle.distributed.metrics import metric_config
from alphatriangle.distributed.pool import WorkerPool
from alphatriangle.distributed.selfplay_actor import SelfPlayWorker, inference_device
from trieye import start_actor


def _fresh_ray() -> None:
    """A private Ray with 2 CPUs: each worker takes one, and a replacement needs the one its
    predecessor freed (another test file in this process may have left its Ray running)."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[object]:
    _fresh_ray()
    try:
        run = run_context("w", tmp_path / "data")
        start_actor(run, metric_config())
        cfg = AlphaTriangleConfig.model_validate(
            {"mcts": {"simulations": 8}, "train": {"games_per_worker": 3}}
        )
        yield SelfPlayWorker.remote(run, cfg, 0, [7])  # type: ignore[attr-defined]
    finally:
        ray.shutdown()


def test_a_worker_plays_k_games_at_once_and_delivers_complete_episodes(worker: Any) -> None:
    info = ray.get(worker.info.remote())
    assert (info["device"], info["games"]) == ("cpu", 3)
    records: list[EpisodeRecord] = []
    while len(records) < 6:
        batch = ray.get(worker.play.remote())
        assert batch, "play() returns once at least one game has ended"
        records += batch
        assert ray.get(worker.info.remote())["games"] == 3
    assert len({r.seed for r in records}) == len(records)  # every game a new seed
    for record in records:
        assert record.length == len(record.policy) == len(record.grid) == len(record.rewards)
        assert record.scores[0] == 0
        assert record.rewards.sum() == pytest.approx(record.score, abs=1e-4)
        np.testing.assert_allclose(record.policy.sum(axis=1), 1.0, atol=1e-6)
        assert not record.policy[~record.valid_mask].any()
        assert record.simulations == 8 * record.length
    assert ray.get(worker.info.remote())["episodes"] == len(records)


def test_the_network_runs_on_a_gpu_share_when_ray_gives_one() -> None:
    assert inference_device([]) == "cpu"
    assert inference_device([0]) == "cuda"
    cfg = AlphaTriangleConfig().train
    assert (cfg.games_at_once(on_gpu=False), cfg.games_at_once(on_gpu=True)) == (8, 64)
    assert cfg.model_copy(update={"games_per_worker": 5}).games_at_once(on_gpu=True) == 5


def _seeds_of(entropy: list[int], worker_id: int, count: int = 2_000) -> list[int]:
    """The first ``count`` game seeds a worker with this entropy draws (``SelfPlayWorker``)."""
    rng = np.random.default_rng([*entropy, worker_id])
    return [int(rng.integers(TRAINING_SEED_FLOOR, 2**32 - 1)) for _ in range(count)]


def test_a_worker_killed_in_the_middle_of_its_games_is_replaced_and_nothing_else_lost(
    tmp_path: Path,
) -> None:
    _fresh_ray()
    try:
        run = run_context("pool", tmp_path / "data")
        start_actor(run, metric_config())
        cfg = AlphaTriangleConfig.model_validate(
            {"mcts": {"simulations": 8}, "train": {"games_per_worker": 3}}
        )
        pool = WorkerPool(run, cfg, 2, [5])
        pool.publish(AlphaTriangleNet(cfg.model).state_dict(), 4)
        records: list[EpisodeRecord] = []
        while len(records) < 4:
            records += pool.collect(timeout=60)
        survivor = pool.workers[1]
        # Every worker always has a play() call in flight: this kill lands inside its games.
        ray.kill(pool.workers[0])
        while pool.replaced == 0 or len(records) < 12:
            records += pool.collect(timeout=60)
        assert pool.replaced == 1
        assert pool.workers[1] is survivor
        # Drain: each worker's info() runs after its play() in flight, whose records the next
        # collect() returns (and it starts another play(), which has finished nothing yet).
        infos = ray.get([w.info.remote() for w in pool.workers])
        records += pool.collect(timeout=0)
        pool.stop()
    finally:
        ray.shutdown()
    by_seed = {r.seed: r for r in records}
    assert len(by_seed) == len(records)
    killed, replacement, other = (
        set(_seeds_of([5, 0], 0)),
        set(_seeds_of([5, 1], 0)),
        set(_seeds_of([5, 0], 1)),
    )
    assert set(by_seed) <= killed | replacement | other
    # The survivor lost nothing: every game it finished reached the driver.
    assert infos[1]["episodes"] == len(set(by_seed) & other) > 0
    # The replacement plays new games (not its predecessor's seeds) with the published weights.
    assert infos[0]["episodes"] == len(set(by_seed) & replacement) > 0
    assert (infos[0]["weight_version"], infos[0]["games"]) == (4, 3)
    assert all(r.weight_version == 4 for r in records)


def test_a_worker_searches_with_the_scheduled_simulations_of_its_weights(tmp_path: Path) -> None:
    _fresh_ray()
    try:
        run = run_context("w", tmp_path / "data")
        start_actor(run, metric_config())
        cfg = AlphaTriangleConfig.model_validate(
            {
                "mcts": {"simulations": 4, "simulations_final": 8, "simulations_ramp_steps": 10},
                "train": {"games_per_worker": 2},
            }
        )
        worker = SelfPlayWorker.remote(run, cfg, 0, [7])  # type: ignore[attr-defined]
        weights = AlphaTriangleNet(cfg.model).state_dict()
        assert ray.get(worker.info.remote())["simulations"] == 4
        ray.get(worker.set_weights.remote(weights, 5))
        assert ray.get(worker.info.remote())["simulations"] == 6  # 4 + floor(4 * 5 / 10)
        first = ray.get(worker.play.remote())
        assert all(r.simulations == 6 * r.length for r in first)
        ray.get(worker.set_weights.remote(weights, 10))
        assert ray.get(worker.info.remote())["simulations"] == 8
        records: list[EpisodeRecord] = []
        while not any(r.simulations == 8 * r.length for r in records):
            records += ray.get(worker.play.remote())
            assert len(records) < 20
        assert all(6 * r.length < r.simulations <= 8 * r.length for r in records)
    finally:
        ray.shutdown()
