"""MuZero's replay: whole game trajectories, sampled as a start position and K unroll steps.

Positions are stored in game order in the ring of ``PositionBuffer`` (an episode's positions
are written contiguously, so the successors of the position in slot ``i`` are in slots
``i + 1, i + 2, ...`` modulo the capacity, and they are newer, so they are overwritten after
it). Each slot also holds the move played there, its reward, its n-step value target and how
many positions of its game follow it. A sample at slot ``i`` is the observation of ``i`` and,
for ``k = 0..K``, the targets of position ``t + k``; past the end of the game ("absorbing
states") the value and reward targets are 0, the policy target is masked out of the loss, and
the actions are drawn uniformly at random.

Line clears are rare (about 1 % of random play's moves), so under uniform replay the reward
loss is almost all "no clear". With ``clear_oversample = c > 1`` (and uniform replay), a
position whose unroll holds a clear (a move at ``t..t+K-1`` of the same game gaining at least
``CLEAR_REWARD``) is drawn ``c`` times as often as one that does not: ``P(i) = c_i / sum_j
c_j``, ``c_i`` = ``c`` or 1. Each sample's importance weight is ``(1 / (N P(i))) ** beta``
(``clear_oversample_beta``), not normalised. With ``beta = 0`` (the default) the weights are
1: a stated bias, the unrolls holding a clear weigh ``c`` times as much in the loss as under
uniform replay (the reward head then overestimates how often a move clears, by up to ``c``
times, but it sees the clears ``c`` times as often). With ``beta = 1`` the weighted loss is in
expectation exactly the uniform mean (the weights average 1 over the draws), so the
oversampling changes which samples carry the clears' signal (more of them, each weighing less:
less noise), not what the loss estimates; in between, part of the bias is corrected, as PER's
exponent does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alphatriangle.core.buffer import PositionBuffer
from alphatriangle.core.features import NUM_GLOBAL_FEATURES, SLOT_FEATURES
from alphatriangle.core.muzero.network import cell_masks, deal_codes
from alphatriangle.core.selfplay import EpisodeRecord

CLEAR_REWARD = 0.5
"""A move clears a line when it gains at least this (trianglengin's reward per cleared
triangle; a placement alone gains 0.01 per triangle and 0.005 for staying alive)."""


def n_step_targets(
    rewards: np.ndarray, root_values: np.ndarray, discount: float, td_steps: int
) -> np.ndarray:
    """Value targets float32 ``[T]`` of one game:
    ``z_t = sum_{i < n, t + i < T} gamma^i rewards[t + i] + gamma^n root_values[t + n]``, the
    bootstrap term only when ``t + n < T`` (the game's end is absorbing: no reward, value 0).
    ``rewards[t]`` is the score the move at ``t`` gained; ``root_values[t]`` the search's value
    of position ``t``. Accumulated in float64."""
    rewards = np.asarray(rewards, dtype=np.float64)
    values = np.asarray(root_values, dtype=np.float64)
    if rewards.ndim != 1 or values.shape != rewards.shape:
        raise ValueError(
            f"rewards and root_values must both be [T], got {rewards.shape} and {values.shape}"
        )
    length = len(rewards)
    powers = discount ** np.arange(td_steps, dtype=np.float64)
    targets = np.zeros(length, dtype=np.float64)
    for t in range(length):
        window = rewards[t : t + td_steps]
        targets[t] = float(powers[: len(window)] @ window)
        if t + td_steps < length:
            targets[t] += discount**td_steps * values[t + td_steps]
    return targets.astype(np.float32)


@dataclass(frozen=True)
class MuZeroBatch:
    """``B`` samples of a start position and ``K`` unroll steps; ``A`` = actions.

    Attributes:
        grid: float32 ``[B, C, H, W]`` observation of the start position.
        other: float32 ``[B, F]`` its extra features.
        actions: int64 ``[B, K]`` the moves played from it (random past the end of the game).
        target_policy: float32 ``[B, K + 1, A]`` search policies of positions ``t..t+K``.
        policy_mask: bool ``[B, K + 1]`` positions inside the game (policy loss only there).
        target_value: float32 ``[B, K + 1]`` n-step value targets (0 past the end).
        target_reward: float32 ``[B, K]`` reward of the move at ``t + k`` (0 past the end).
        weights: float32 ``[B]`` importance-sampling weights (ones under uniform replay).
        indices: int64 ``[B]`` buffer slots, for ``update_priorities``.
        next_grid: float32 ``[B, K, C, H, W]`` observations of positions ``t+1..t+K`` (zeros
            past the end; ``policy_mask[:, 1:]`` says which are inside), for the consistency
            loss; None when not drawn.
        next_other: float32 ``[B, K, F]`` their extra features.
        deals: bool ``[B, K]`` the move at ``t + k`` played the hand's last piece and the game
            dealt a new hand (a position follows it): Stochastic MuZero's chance steps.
        deal_codes: int64 ``[B, K, slots]`` the hand dealt there (``network.deal_codes`` of
            position ``t + k + 1``; 0 where no deal).
        cell_masks: float32 ``[B, K, WINDOW]`` the cells the reward of step ``k`` reads
            (``network.cell_masks`` of the start position, ``k`` moves after it: the shape's
            footprint while the start's hand lasts, the whole window after the deal, as the
            search reads them); None: the whole window at every step.
    """

    grid: np.ndarray
    other: np.ndarray
    actions: np.ndarray
    target_policy: np.ndarray
    policy_mask: np.ndarray
    target_value: np.ndarray
    target_reward: np.ndarray
    weights: np.ndarray
    indices: np.ndarray
    next_grid: np.ndarray | None = None
    next_other: np.ndarray | None = None
    cell_masks: np.ndarray | None = None
    deals: np.ndarray | None = None
    deal_codes: np.ndarray | None = None


class TrajectoryBuffer(PositionBuffer[MuZeroBatch]):
    """Positions of whole games with the move, reward, n-step target and game-remaining count of
    each; samples ``MuZeroBatch``es of ``unroll_steps``."""

    ROW_FIELDS = (
        "grid",
        "other",
        "policy",
        "valid_mask",
        "value_target",
        "action",
        "reward",
        "steps_left",
    )

    def __init__(
        self,
        capacity: int,
        grid_shape: tuple[int, ...],
        other_dim: int,
        action_dim: int,
        *,
        unroll_steps: int,
        td_steps: int,
        discount: float,
        prioritized: bool = False,
        alpha: float = 0.6,
        beta: float = 0.4,
        seed: int = 0,
        clear_oversample: float = 1.0,
        clear_oversample_beta: float = 1.0,
    ) -> None:
        super().__init__(
            capacity, grid_shape, other_dim, action_dim, prioritized, alpha, beta, seed
        )
        self.clear_oversample, self.clear_oversample_beta = clear_oversample, clear_oversample_beta
        self.clear_ahead = np.zeros(capacity, dtype=bool)
        """Slots whose unroll holds a clear; derived from ``reward`` and ``steps_left`` (so
        not saved: ``load_state_dict`` recomputes it)."""
        self.unroll_steps, self.td_steps, self.discount = unroll_steps, td_steps, discount
        self.action_dim = action_dim
        self.action = np.zeros(capacity, dtype=np.int16)
        self.reward = np.zeros(capacity, dtype=np.float32)
        self.steps_left = np.zeros(capacity, dtype=np.int32)
        """Positions of the same game after this one."""

    def rows(self, record: EpisodeRecord) -> dict[str, np.ndarray]:
        length = record.length
        if record.actions.shape != (length,) or record.root_values.shape != (length,):
            raise ValueError(
                "a MuZero episode record needs actions and root_values of its length "
                f"{length}, got {record.actions.shape} and {record.root_values.shape}"
            )
        return {
            "grid": record.grid,
            "other": record.other,
            "policy": record.policy,
            "valid_mask": record.valid_mask,
            "value_target": n_step_targets(
                record.rewards, record.root_values, self.discount, self.td_steps
            ),
            "action": record.actions,
            "reward": record.rewards,
            "steps_left": np.arange(length - 1, -1, -1, dtype=np.int32),
        }

    def _mark_clears(self, slots: np.ndarray) -> None:
        """``clear_ahead`` of ``slots``: a move at ``t..t+K-1`` inside the game clears."""
        k = np.arange(self.unroll_steps)
        ahead = (slots[:, None] + k[None, :]) % self.capacity
        inside = k[None, :] <= self.steps_left[slots][:, None]
        self.clear_ahead[slots] = (inside & (self.reward[ahead] >= CLEAR_REWARD)).any(axis=1)

    def add_episode(self, record: EpisodeRecord) -> np.ndarray:
        start = self.position
        evicted = super().add_episode(record)
        # A game's positions are written together and an unroll stays inside its game, so
        # only the new slots change.
        written = min(record.length, self.capacity)
        self._mark_clears((start + np.arange(written)) % self.capacity)
        return evicted

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        self.clear_ahead[:] = False
        self._mark_clears(np.arange(self.size))

    def sampling_probabilities(self) -> np.ndarray:
        """float64 ``[size]``: each stored position's chance of a uniform-replay draw under
        ``clear_oversample``."""
        c = np.where(self.clear_ahead[: self.size], self.clear_oversample, 1.0)
        out: np.ndarray = c / c.sum()
        return out

    def sample(self, batch_size: int) -> MuZeroBatch:
        """As ``PositionBuffer.sample``; without PER and with ``clear_oversample > 1``, drawn
        by ``sampling_probabilities`` with weights ``(1 / (N P(i))) ** beta`` (see the module)."""
        if self.tree is not None or self.clear_oversample == 1.0 or self.size == 0:
            return super().sample(batch_size)
        probs = self.sampling_probabilities()
        indices = self.rng.choice(self.size, size=batch_size, p=probs).astype(np.int64)
        weights = (1.0 / (self.size * probs[indices])) ** self.clear_oversample_beta
        weights = weights.astype(np.float32)
        np.add.at(self.times_sampled, indices, 1)
        return self.batch(indices, weights)

    def batch(self, indices: np.ndarray, weights: np.ndarray) -> MuZeroBatch:
        k = np.arange(self.unroll_steps + 1)
        slots = (indices[:, None] + k[None, :]) % self.capacity  # [B, K + 1]
        inside = k[None, :] <= self.steps_left[indices][:, None]  # [B, K + 1]
        moves = inside[:, :-1]  # a move was played at t + k, k < K
        random_actions = self.rng.integers(0, self.action_dim, size=moves.shape)
        policy = self.policy[slots].astype(np.float32)
        policy[~inside] = 0.0
        later, later_inside = slots[:, 1:], inside[:, 1:]
        next_grid = self.grid[later].astype(np.float32)
        next_grid[~later_inside] = 0.0
        next_other = self.other[later].astype(np.float32)
        next_other[~later_inside] = 0.0
        other = self.other[indices].astype(np.float32)
        actions = np.where(moves, self.action[slots[:, :-1]], random_actions).astype(np.int64)
        masks = np.stack(
            [
                cell_masks(other, actions[:, k], k, self.action_dim)
                for k in range(self.unroll_steps)
            ],
            axis=1,
        )
        return MuZeroBatch(
            grid=self.grid[indices].astype(np.float32),
            other=other,
            actions=actions,
            target_policy=policy,
            policy_mask=inside,
            target_value=np.where(inside, self.value_target[slots], 0.0).astype(np.float32),
            target_reward=np.where(moves, self.reward[slots[:, :-1]], 0.0).astype(np.float32),
            weights=weights,
            indices=indices,
            next_grid=next_grid,
            next_other=next_other,
            cell_masks=masks,
            **self._deals(slots, inside),
        )

    def _deals(self, slots: np.ndarray, inside: np.ndarray) -> dict[str, np.ndarray]:
        """``deals`` and ``deal_codes`` of the unrolls at ``slots [B, K + 1]``: a move inside
        the game from a hand of one piece, followed by a position of the same game."""
        b, k1 = slots.shape
        num_slots = (self.other.shape[1] - NUM_GLOBAL_FEATURES) // SLOT_FEATURES
        present = self.other[slots[:, :-1]][:, :, : num_slots * SLOT_FEATURES : SLOT_FEATURES]
        deals = inside[:, 1:] & (np.rint(present.astype(np.float32).sum(axis=2)) == 1)
        codes = deal_codes(self.other[slots[:, 1:]].reshape(b * (k1 - 1), -1)).reshape(
            b, k1 - 1, num_slots
        )
        return {"deals": deals, "deal_codes": np.where(deals[:, :, None], codes, 0)}
