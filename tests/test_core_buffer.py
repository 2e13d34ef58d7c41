"""Value targets, replay buffer storage, sampling, priorities and persistence: exact values."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from alphatriangle.core.buffer import (
    PRIORITY_EPS,
    ReplayBuffer,
    SumTree,
    snapshot_problem,
    value_targets,
)
from alphatriangle.core.selfplay import EpisodeRecord

GRID = (2, 2, 3)
OTHER = 4
ACTIONS = 5


def record(rewards: list[float], tag: float = 0.0) -> EpisodeRecord:
    """A hand-made episode whose position t has grid/other filled with ``tag + t / 100``."""
    t = len(rewards)
    scores = np.concatenate([[0.0], np.cumsum(rewards)]).astype(np.float32)
    fill = (tag + np.arange(t) / 100).astype(np.float32)
    policy = np.zeros((t, ACTIONS), dtype=np.float32)
    policy[np.arange(t), np.arange(t) % ACTIONS] = 1.0
    return EpisodeRecord(
        grid=np.broadcast_to(fill[:, None, None, None], (t, *GRID)).copy(),
        other=np.broadcast_to(fill[:, None], (t, OTHER)).copy(),
        policy=policy,
        valid_mask=policy > 0,
        scores=scores,
        rewards=np.asarray(rewards, dtype=np.float32),
        score=float(scores[-1]),
        length=t,
        triangles_cleared=0,
        simulations=0,
        search_depth=0.0,
        seed=0,
    )


def buffer(capacity: int, **kwargs: object) -> ReplayBuffer:
    return ReplayBuffer(capacity, GRID, OTHER, ACTIONS, **kwargs)  # type: ignore[arg-type]


def test_value_targets_are_returns_to_go() -> None:
    rewards = np.array([0.5, 0.0, 4.5, 0.25], dtype=np.float32)
    np.testing.assert_array_equal(value_targets(rewards), [5.25, 4.75, 4.75, 0.25])
    assert value_targets(np.zeros(0)).shape == (0,)
    with pytest.raises(ValueError, match="1-D"):
        value_targets(np.zeros((2, 2)))


def test_value_targets_equal_final_minus_current_score() -> None:
    rec = record([0.015, 4.52, 0.025, 0.035])
    np.testing.assert_allclose(
        value_targets(rec.rewards), rec.score - rec.scores[:-1], rtol=0, atol=1e-6
    )


def test_add_wraps_and_keeps_the_newest() -> None:
    buf = buffer(5)
    buf.add_episode(record([1.0, 2.0, 3.0], tag=0.0))
    assert (len(buf), buf.position, buf.added) == (3, 3, 3)
    buf.add_episode(record([1.0, 1.0, 1.0, 1.0], tag=0.5))
    assert (len(buf), buf.position, buf.added) == (5, 2, 7)
    # slots 3, 4, 0, 1 hold the second episode; slot 2 the last position of the first.
    np.testing.assert_array_equal(buf.value_target, [2.0, 1.0, 3.0, 4.0, 3.0])
    expected = np.array([0.52, 0.53, 0.02, 0.5, 0.51], np.float16)
    np.testing.assert_array_equal(buf.other[:, 0], expected)
    buf.add_episode(record([1.0] * 7, tag=0.9))  # longer than the buffer: its last 5 remain
    np.testing.assert_array_equal(np.sort(buf.value_target), [1.0, 2.0, 3.0, 4.0, 5.0])
    assert (len(buf), buf.added) == (5, 14)


def test_uniform_sample_returns_consistent_rows() -> None:
    buf = buffer(10, seed=3)
    buf.add_episode(record([1.0, 0.0, 2.0, 0.5]))
    batch = buf.sample(64)
    assert batch.grid.shape == (64, *GRID)
    assert batch.grid.dtype == np.float32
    assert batch.policy.dtype == np.float32
    assert batch.valid_mask.dtype == bool
    np.testing.assert_array_equal(batch.weights, np.ones(64, dtype=np.float32))
    assert set(batch.indices.tolist()) == {0, 1, 2, 3}
    np.testing.assert_array_equal(batch.value_target, np.array([3.5, 2.5, 2.5, 0.5])[batch.indices])
    np.testing.assert_array_equal(batch.policy.argmax(axis=1), batch.indices % ACTIONS)


def test_sum_tree_prefix_search_is_exact() -> None:
    tree = SumTree(5)
    tree.set(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))
    assert tree.total == 10.0
    targets = np.array([0.0, 0.999, 1.0, 2.999, 3.0, 5.999, 6.0, 9.999])
    np.testing.assert_array_equal(tree.find(targets), [0, 0, 1, 1, 2, 2, 3, 3])
    tree.set(np.array([1, 1]), np.array([7.0, 0.0]))  # last write wins; sums follow
    assert tree.total == 8.0
    np.testing.assert_array_equal(tree.find(np.array([0.5, 1.0, 3.9, 7.99])), [0, 2, 2, 3])
    np.testing.assert_array_equal(tree.get(np.arange(5)), [1.0, 0.0, 3.0, 4.0, 0.0])


def test_prioritized_sampling_proportions_and_weights() -> None:
    buf = buffer(4, prioritized=True, alpha=1.0, beta=1.0, seed=0)
    buf.add_episode(record([0.0, 0.0]))
    # Raw priorities chosen so that priority + eps is exactly 1 and 3.
    buf.update_priorities(np.array([0, 1]), np.array([1.0, 3.0]) - PRIORITY_EPS)
    assert buf.tree is not None
    np.testing.assert_allclose(buf.tree.get(np.array([0, 1])), [1.0, 3.0], rtol=1e-12)
    batch = buf.sample(1000)
    # Stratified sampling over the priority mass: counts are within one of 250 / 750.
    counts = np.bincount(batch.indices, minlength=2)
    assert abs(counts[0] - 250) <= 1
    assert abs(counts[1] - 750) <= 1
    # w = (N * P) ** -beta = (2 * 0.25) ** -1 = 2 and (2 * 0.75) ** -1 = 2/3; divided by 2.
    np.testing.assert_allclose(batch.weights[batch.indices == 0], 1.0, rtol=1e-6)
    np.testing.assert_allclose(batch.weights[batch.indices == 1], 1 / 3, rtol=1e-6)


def test_new_positions_get_the_largest_priority() -> None:
    buf = buffer(8, prioritized=True, alpha=0.5)
    buf.add_episode(record([0.0, 0.0]))
    buf.update_priorities(np.array([0, 1]), np.array([4.0, 0.0]))
    buf.add_episode(record([0.0]))
    assert buf.tree is not None
    expected = np.sqrt([4.0 + PRIORITY_EPS, PRIORITY_EPS, 4.0 + PRIORITY_EPS])
    np.testing.assert_allclose(buf.tree.get(np.arange(3)), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="non-negative"):
        buf.update_priorities(np.array([0]), np.array([-1.0]))
    with pytest.raises(ValueError, match="prioritized=True"):
        buffer(4).update_priorities(np.array([0]), np.array([1.0]))


@pytest.mark.parametrize("prioritized", [False, True])
def test_state_dict_round_trip_through_npz(tmp_path: Path, prioritized: bool) -> None:
    buf = buffer(100, prioritized=prioritized, seed=7)
    buf.add_episode(record([1.0, 0.5, 0.25]))
    buf.add_episode(record([2.0, 0.0], tag=0.3))
    if prioritized:
        buf.update_priorities(np.array([1, 3]), np.array([2.0, 5.0]))
    buf.sample(5)  # advance the RNG so that its state matters
    path = tmp_path / "buffer.npz"
    np.savez(path, **buf.state_dict())  # type: ignore[arg-type]
    with np.load(path, allow_pickle=False) as data:
        saved = {name: data[name] for name in data.files}
    assert saved["grid"].shape == (5, *GRID)  # only the filled part is written

    restored = buffer(100, prioritized=prioritized, seed=999)
    restored.load_state_dict(saved)
    assert (len(restored), restored.position, restored.added) == (5, 5, 5)
    a, b = buf.sample(16), restored.sample(16)
    for name in ("grid", "other", "policy", "valid_mask", "value_target", "weights", "indices"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    restored.add_episode(record([1.0]))
    assert restored.position == 6


def test_load_rejects_a_different_capacity() -> None:
    buf = buffer(10)
    buf.add_episode(record([1.0]))
    with pytest.raises(ValueError, match=r"capacity 10, this run.s buffer 20"):
        buffer(20).load_state_dict(buf.state_dict())


def versioned(rewards: list[float], versions: list[int], tag: float = 0.0) -> EpisodeRecord:
    """``record`` whose moves were searched by the weight versions ``versions``."""
    return dataclasses.replace(
        record(rewards, tag),
        weight_versions=np.asarray(versions, dtype=np.int64),
        weight_version=versions[-1],
    )


def test_each_slot_keeps_the_weight_version_that_searched_its_position() -> None:
    buf = buffer(5)
    buf.add_episode(versioned([1.0, 1.0, 1.0], [0, 0, 3]))
    # A record that does not say per move: all its positions take its last move's version.
    buf.add_episode(dataclasses.replace(record([1.0, 1.0]), weight_version=6))
    np.testing.assert_array_equal(buf.weight_version, [0, 0, 3, 6, 6])
    np.testing.assert_array_equal(buf.version_ages(np.array([0, 2, 4, 2]), 10), [10, 7, 4, 7])
    # Unknown versions (-1: records nobody versioned) are left out of the ages.
    buf.add_episode(record([1.0]))
    np.testing.assert_array_equal(buf.weight_version, [-1, 0, 3, 6, 6])
    np.testing.assert_array_equal(buf.version_ages(np.array([0, 1, 0]), 10), [10])


def test_sampling_counts_every_draw_and_eviction_returns_the_counts() -> None:
    buf = buffer(4, seed=5)
    assert buf.add_episode(versioned([1.0, 1.0, 1.0], [0, 0, 0])).shape == (0,)
    drawn = np.concatenate([buf.sample(7).indices for _ in range(3)])
    counts = np.bincount(drawn, minlength=4)
    np.testing.assert_array_equal(buf.times_sampled, counts)
    assert counts.sum() == 21
    assert counts[3] == 0
    # Slot 3 is empty: filling it evicts nothing; the next two positions overwrite slots 0, 1.
    evicted = buf.add_episode(versioned([1.0, 1.0, 1.0], [2, 2, 2]))
    np.testing.assert_array_equal(evicted, counts[:2])
    np.testing.assert_array_equal(buf.times_sampled, [0, 0, counts[2], 0])
    # An episode longer than the buffer evicts everything, oldest slot first (2, 3, 0, 1); its
    # own first positions never enter.
    np.testing.assert_array_equal(buf.add_episode(record([1.0] * 6)), [counts[2], 0, 0, 0])


def test_bookkeeping_survives_a_snapshot_and_the_resumed_buffer_goes_on(tmp_path: Path) -> None:
    buf = buffer(4, seed=2)
    buf.add_episode(versioned([1.0, 1.0, 1.0], [4, 4, 7]))
    buf.sample(5)
    np.savez(tmp_path / "b.npz", **buf.state_dict())  # type: ignore[arg-type]
    with np.load(tmp_path / "b.npz", allow_pickle=False) as data:
        saved = {name: data[name] for name in data.files}
    assert snapshot_problem(saved, buf.layout()) is None
    restored = buffer(4, seed=9)
    restored.load_state_dict(saved)
    np.testing.assert_array_equal(restored.weight_version, [4, 4, 7, -1])
    np.testing.assert_array_equal(restored.times_sampled, buf.times_sampled)
    # Resumed, the two buffers draw, count and evict alike.
    for b in (buf, restored):
        b.sample(6)
    np.testing.assert_array_equal(restored.times_sampled, buf.times_sampled)
    new = versioned([1.0, 1.0], [9, 9])
    np.testing.assert_array_equal(restored.add_episode(new), buf.add_episode(new))
    np.testing.assert_array_equal(restored.weight_version, [9, 4, 7, 9])
    np.testing.assert_array_equal(restored.version_ages(np.arange(4), 12), [3, 8, 5, 3])


def test_a_snapshot_of_an_older_trainer_loads_without_bookkeeping() -> None:
    buf = buffer(4)
    buf.add_episode(versioned([1.0, 1.0], [3, 3]))
    buf.sample(4)
    state = buf.state_dict()
    old = {k: v for k, v in state.items() if k not in ("weight_version", "times_sampled")}
    assert snapshot_problem(old, buf.layout()) is None
    restored = buffer(4)
    restored.load_state_dict(old)
    np.testing.assert_array_equal(restored.weight_version, [-1, -1, -1, -1])
    np.testing.assert_array_equal(restored.times_sampled, [0, 0, 0, 0])
    assert restored.version_ages(np.array([0, 1]), 5).shape == (0,)
    bad = {**state, "times_sampled": np.zeros(3, dtype=np.int32)}
    assert snapshot_problem(bad, buf.layout()) == (
        "field 'times_sampled' has shape (3,), expected (2,)"
    )
