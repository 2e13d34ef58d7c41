"""Replay buffer of self-play positions (preallocated numpy arrays, optional prioritized
replay) and the value targets it stores."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

if TYPE_CHECKING:
    from alphatriangle.core.selfplay import EpisodeRecord


def value_targets(rewards: np.ndarray) -> np.ndarray:
    """Return-to-go float32 ``[T]`` of rewards ``[T]``: ``out[t] = sum(rewards[t:])``.

    The target of position ``t`` is the full undiscounted return-to-go
    ``sum(rewards[t:]) = final_score - score_t``, where rewards are ``game_score()`` deltas. This is
    what ``trimcts`` needs: it backs up the leaf value unchanged (no per-step rewards, no discount)
    and scores a terminal leaf by its final ``game_score()``, so the network's estimate of future
    gain, added to the banked score, must estimate the final score. Episodes are tens to a few
    hundred moves, so the Monte Carlo return has modest variance, is unbiased, and - unlike an
    n-step bootstrapped target - does not depend on stale value predictions of an older network.

    Accumulated in float64 so that long episodes do not drift.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be 1-D [T], got shape {rewards.shape}")
    return np.cumsum(rewards[::-1])[::-1].astype(np.float32)


PRIORITY_EPS = 1e-3
"""Added to every priority so that no stored position becomes unsampleable."""


@dataclass(frozen=True)
class Batch:
    """A training batch of ``B`` positions.

    Attributes:
        grid: float32 ``[B, C, H, W]``.
        other: float32 ``[B, F]``.
        policy: float32 ``[B, A]`` MCTS visit distribution (target of the policy head).
        valid_mask: bool ``[B, A]`` legal actions.
        value_target: float32 ``[B]`` future score gain ``final_score - score_t``.
        weights: float32 ``[B]`` importance-sampling weights (all ones when uniform).
        indices: int64 ``[B]`` buffer slots, for ``update_priorities``.
    """

    grid: np.ndarray
    other: np.ndarray
    policy: np.ndarray
    valid_mask: np.ndarray
    value_target: np.ndarray
    weights: np.ndarray
    indices: np.ndarray


class SumTree:
    """Binary tree of non-negative priorities over ``capacity`` leaves, float64.

    ``tree[1]`` is the total; node ``i`` has children ``2i`` and ``2i + 1``; leaf ``j`` is
    ``tree[leaf_base + j]``. Updates and searches are vectorised over many leaves at once.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"SumTree capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.leaf_base = 1 << max(0, (capacity - 1).bit_length())
        self.tree = np.zeros(2 * self.leaf_base, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def get(self, leaves: np.ndarray) -> np.ndarray:
        """Priorities of ``leaves [N]``."""
        return self.tree[self.leaf_base + np.asarray(leaves, dtype=np.int64)]

    def set(self, leaves: np.ndarray, priorities: np.ndarray) -> None:
        """Set ``priorities [N]`` at ``leaves [N]`` (the last wins on repeats) and fix the sums."""
        nodes = self.leaf_base + np.asarray(leaves, dtype=np.int64)
        self.tree[nodes] = priorities
        nodes = np.unique(nodes // 2)
        while nodes[0] >= 1:
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]
            if nodes[0] == 1:
                break
            nodes = np.unique(nodes // 2)

    def find(self, targets: np.ndarray) -> np.ndarray:
        """Leaf ``j`` for each target mass ``u`` in ``[0, total)``: the first leaf whose prefix sum
        of priorities exceeds ``u``. int64 ``[N]``."""
        u = np.array(targets, dtype=np.float64)
        nodes = np.ones(u.shape, dtype=np.int64)
        while nodes[0] < self.leaf_base:
            left = self.tree[2 * nodes]
            right = u >= left
            u -= left * right
            nodes = 2 * nodes + right
        leaves = nodes - self.leaf_base
        # Rounding can step onto an empty leaf right of the last positive one; step back.
        empty = self.tree[nodes] <= 0.0
        if empty.any():
            positive = np.flatnonzero(self.tree[self.leaf_base : self.leaf_base + self.capacity])
            pos = np.searchsorted(positive, leaves[empty], side="right") - 1
            leaves[empty] = positive[np.maximum(pos, 0)]
        return leaves


BatchT = TypeVar("BatchT")


class PositionBuffer(Generic[BatchT]):
    """Ring buffer of positions with uniform or prioritized (PER) sampling.

    Each position is one row of the arrays named in ``ROW_FIELDS``; a subclass says which rows
    an episode gives (``rows``) and how a batch is built from sampled slots (``batch``):
    ``ReplayBuffer`` (AlphaZero) and ``TrajectoryBuffer`` (MuZero).

    Grid, extra features and policy are stored as float16 to halve memory (all values lie in
    [0, 1]; relative rounding below 1e-3) and returned as float32.

    With ``prioritized``, a position is drawn with probability ``p_i ** alpha / sum_j p_j ** alpha``
    where ``p_i = priority + PRIORITY_EPS``; new positions get the largest priority seen so far.
    Importance weights are ``(N * P(i)) ** -beta``, divided by their batch maximum.

    Every slot also keeps the bookkeeping of ``BOOKKEEPING`` (for the ``learn/*`` diagnostics):
    ``weight_version``, the version of the network weights that searched the position (the
    learner step they were published at; -1 unknown), for the age of what the learner draws
    (``version_ages``), and ``times_sampled``, how often ``sample`` has drawn it;
    ``add_episode`` returns the counts of the positions it overwrites, so that how often a
    position is trained on over its life is known when it leaves. (MuZero's samples count for
    their start position only, not for the positions unrolled after it.)
    """

    def __init__(
        self,
        capacity: int,
        grid_shape: tuple[int, ...],
        other_dim: int,
        action_dim: int,
        prioritized: bool = False,
        alpha: float = 0.6,
        beta: float = 0.4,
        seed: int = 0,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"replay buffer capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.prioritized = prioritized
        self.alpha = alpha
        self.beta = beta
        self.grid = np.zeros((capacity, *grid_shape), dtype=np.float16)
        self.other = np.zeros((capacity, other_dim), dtype=np.float16)
        self.policy = np.zeros((capacity, action_dim), dtype=np.float16)
        self.valid_mask = np.zeros((capacity, action_dim), dtype=bool)
        self.value_target = np.zeros(capacity, dtype=np.float32)
        self.weight_version = np.full(capacity, -1, dtype=np.int32)
        self.times_sampled = np.zeros(capacity, dtype=np.int32)
        self.tree = SumTree(capacity) if prioritized else None
        self.max_priority = 1.0
        self.position = 0
        self.size = 0
        self.added = 0
        """Positions ever added (for replay-ratio accounting)."""
        self.rng = np.random.default_rng(seed)

    ROW_FIELDS: tuple[str, ...] = ("grid", "other", "policy", "valid_mask", "value_target")
    """The per-position arrays (attributes of these names, first axis the slot)."""

    BOOKKEEPING: tuple[str, ...] = ("weight_version", "times_sampled")
    """Per-slot int32 arrays that are no training data; snapshots of older trainers lack them
    (they load as unknown versions and zero counts)."""

    SUM_TREE_BYTES_PER_POSITION = 32
    """At most what ``SumTree`` allocates per leaf: float64 nodes, up to four a leaf (twice the
    capacity rounded up to a power of two)."""

    @property
    def bytes_per_position(self) -> int:
        """Bytes one slot of this buffer takes: its row of every ``ROW_FIELDS`` and
        ``BOOKKEEPING`` array and, when prioritized, its share of the sum tree."""
        rows = sum(getattr(self, name)[0].nbytes for name in self.ROW_FIELDS + self.BOOKKEEPING)
        return int(rows) + (self.SUM_TREE_BYTES_PER_POSITION if self.prioritized else 0)

    def __len__(self) -> int:
        return self.size

    def rows(self, record: EpisodeRecord) -> dict[str, np.ndarray]:
        """The episode's rows, ``[T, ...]`` for every field of ``ROW_FIELDS``."""
        raise NotImplementedError

    def batch(self, indices: np.ndarray, weights: np.ndarray) -> BatchT:
        """The training batch of the positions at ``indices`` with importance ``weights``."""
        raise NotImplementedError

    def add_episode(self, record: EpisodeRecord) -> np.ndarray:
        """Append the episode's positions with their targets, overwriting the oldest; returns
        how often each overwritten position was sampled, int32 ``[E]`` (empty until the buffer
        is full)."""
        n = record.length
        if n == 0:
            return np.zeros(0, dtype=np.int32)
        rows = self.rows(record)
        keep = slice(max(0, n - self.capacity), n)
        slots = (self.position + np.arange(keep.stop - keep.start)) % self.capacity
        # Until the ring is full, position == size, so only slots below size hold positions.
        evicted = self.times_sampled[slots[slots < self.size]].copy()
        for name in self.ROW_FIELDS:
            getattr(self, name)[slots] = rows[name][keep]
        versions = record.weight_versions
        if versions.shape != (n,):  # a record that does not say per move: its last move's
            versions = np.full(n, record.weight_version)
        self.weight_version[slots] = versions[keep]
        self.times_sampled[slots] = 0
        if self.tree is not None:
            self.tree.set(slots, np.full(len(slots), self.max_priority**self.alpha))
        self.position = int((slots[-1] + 1) % self.capacity)
        self.size = min(self.capacity, self.size + len(slots))
        self.added += n
        return evicted

    def sample(self, batch_size: int) -> BatchT:
        """Draw ``batch_size`` positions with replacement (stratified over the mass with PER);
        the batch ``batch`` builds from them. Each draw counts in ``times_sampled``."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if self.tree is None:
            indices = self.rng.integers(0, self.size, size=batch_size)
            weights = np.ones(batch_size, dtype=np.float32)
        else:
            total = self.tree.total
            strata = (np.arange(batch_size) + self.rng.random(batch_size)) / batch_size
            indices = self.tree.find(strata * total)
            probs = self.tree.get(indices) / total
            w = (self.size * probs) ** -self.beta
            weights = (w / w.max()).astype(np.float32)
        indices = indices.astype(np.int64)
        np.add.at(self.times_sampled, indices, 1)
        return self.batch(indices, weights)

    def version_ages(self, indices: np.ndarray, version: int) -> np.ndarray:
        """``version`` minus the weight version of each slot of ``indices`` whose version is
        known, int64 ``[<= N]``: how many learner steps older than ``version`` the network that
        searched those positions was."""
        versions = self.weight_version[indices].astype(np.int64)
        ages: np.ndarray = version - versions[versions >= 0]
        return ages

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set new raw priorities ``[N]`` (e.g. absolute value errors, >= 0) of sampled slots."""
        if self.tree is None:
            raise ValueError("update_priorities needs a buffer created with prioritized=True")
        priorities = np.asarray(priorities, dtype=np.float64)
        if priorities.shape != np.shape(indices) or (priorities < 0).any():
            raise ValueError("priorities must be non-negative and match indices in shape")
        raw = priorities + PRIORITY_EPS
        self.max_priority = max(self.max_priority, float(raw.max()))
        self.tree.set(indices, raw**self.alpha)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The filled part and counters as plain arrays (``np.savez``/``allow_pickle=False`` safe)."""
        n = self.size
        state = {
            "capacity": np.asarray(self.capacity, dtype=np.int64),
            "position": np.asarray(self.position, dtype=np.int64),
            "size": np.asarray(n, dtype=np.int64),
            "added": np.asarray(self.added, dtype=np.int64),
            "max_priority": np.asarray(self.max_priority, dtype=np.float64),
            "rng": _encode_rng(self.rng),
            **{name: getattr(self, name)[:n] for name in (*self.ROW_FIELDS, *self.BOOKKEEPING)},
        }
        if self.tree is not None:
            state["priorities"] = self.tree.get(np.arange(n))
        return state

    def layout(self) -> BufferLayout:
        """What a snapshot of this buffer must look like (see ``snapshot_problem``)."""
        return BufferLayout(
            capacity=self.capacity,
            rows={name: getattr(self, name).shape[1:] for name in self.ROW_FIELDS},
            prioritized=self.tree is not None,
            bookkeeping=self.BOOKKEEPING,
        )

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore from ``state_dict()`` output; the buffer must have the same capacity and shapes."""
        problem = snapshot_problem(state, self.layout())
        if problem is not None:
            raise ValueError(f"saved replay buffer: {problem}")
        n = int(state["size"])
        for name in self.ROW_FIELDS:
            getattr(self, name)[:n] = state[name]
        self.weight_version[:] = -1
        self.times_sampled[:] = 0
        for name in self.BOOKKEEPING:
            if name in state:
                getattr(self, name)[:n] = state[name]
        if self.tree is not None:
            if "priorities" in state:
                self.tree.set(np.arange(n), state["priorities"])
            elif n:
                self.tree.set(np.arange(n), np.full(n, float(state["max_priority"]) ** self.alpha))
        self.position = int(state["position"])
        self.size = n
        self.added = int(state["added"])
        self.max_priority = float(state["max_priority"])
        self.rng = _decode_rng(state["rng"])


def monte_carlo_targets(record: EpisodeRecord) -> np.ndarray:
    """``value_targets`` of the record's rewards."""
    return value_targets(record.rewards)


class ReplayBuffer(PositionBuffer[Batch]):
    """AlphaZero's buffer: positions with the value targets ``targets`` gives an episode
    (``monte_carlo_targets`` unless told otherwise: see ``core.targets``); the other arguments
    are ``PositionBuffer``'s."""

    def __init__(
        self,
        *args: Any,
        targets: Callable[[EpisodeRecord], np.ndarray] = monte_carlo_targets,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.targets = targets

    def rows(self, record: EpisodeRecord) -> dict[str, np.ndarray]:
        return {
            "grid": record.grid,
            "other": record.other,
            "policy": record.policy,
            "valid_mask": record.valid_mask,
            "value_target": self.targets(record),
        }

    def batch(self, indices: np.ndarray, weights: np.ndarray) -> Batch:
        return Batch(
            grid=self.grid[indices].astype(np.float32),
            other=self.other[indices].astype(np.float32),
            policy=self.policy[indices].astype(np.float32),
            valid_mask=self.valid_mask[indices],
            value_target=self.value_target[indices],
            weights=weights,
            indices=indices,
        )


_SCALARS = ("capacity", "position", "size", "added", "max_priority")


@dataclass(frozen=True)
class BufferLayout:
    """Capacity and per-position array shapes of a buffer; picklable, for validators."""

    capacity: int
    rows: dict[str, tuple[int, ...]]
    prioritized: bool
    bookkeeping: tuple[str, ...] = ()
    """Per-slot scalar arrays a snapshot may lack (older trainers), of shape ``[size]`` if there."""


def snapshot_problem(state: Mapping[str, Any], layout: BufferLayout) -> str | None:
    """Why ``state`` is not a snapshot that loads into a buffer of ``layout``, or None.
    A ``trieye`` buffer validator (bind ``layout`` with ``functools.partial``)."""
    missing = [k for k in (*_SCALARS, "rng", *layout.rows) if k not in state]
    if missing:
        return f"no {', '.join(missing)} arrays: not a replay buffer snapshot of this trainer"
    if any(np.shape(state[k]) != () for k in _SCALARS) or np.shape(state["rng"]) != (6,):
        return "its counters are not scalars"
    capacity, n = int(state["capacity"]), int(state["size"])
    if capacity != layout.capacity:
        return (
            f"capacity {capacity}, this run's buffer {layout.capacity}; use the run's "
            "original buffer_capacity"
        )
    if not 0 <= n <= capacity or not 0 <= int(state["position"]) < capacity:
        return f"size {n} or position {int(state['position'])} outside capacity {capacity}"
    for name, row in layout.rows.items():
        if np.shape(state[name]) != (n, *row):
            return f"field {name!r} has shape {np.shape(state[name])}, expected {(n, *row)}"
    for name in layout.bookkeeping:
        if name in state and np.shape(state[name]) != (n,):
            return f"field {name!r} has shape {np.shape(state[name])}, expected {(n,)}"
    if layout.prioritized and "priorities" in state and np.shape(state["priorities"]) != (n,):
        return f"priorities have shape {np.shape(state['priorities'])}, expected {(n,)}"
    return None


_MASK64 = (1 << 64) - 1


def _encode_rng(rng: np.random.Generator) -> np.ndarray:
    """PCG64 state as uint64 ``[6]``: state hi/lo, increment hi/lo, has_uint32, uinteger."""
    st = rng.bit_generator.state
    if st["bit_generator"] != "PCG64":
        raise ValueError(f"cannot encode a {st['bit_generator']} generator; use PCG64")
    s, inc = st["state"]["state"], st["state"]["inc"]
    return np.array(
        [s >> 64, s & _MASK64, inc >> 64, inc & _MASK64, st["has_uint32"], st["uinteger"]],
        dtype=np.uint64,
    )


def _decode_rng(encoded: np.ndarray) -> np.random.Generator:
    v = [int(x) for x in encoded]
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": (v[0] << 64) | v[1], "inc": (v[2] << 64) | v[3]},
        "has_uint32": v[4],
        "uinteger": v[5],
    }
    return rng
