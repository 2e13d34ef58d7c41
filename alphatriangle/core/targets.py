"""AlphaZero's value targets (``[train] value_target``), computed where an episode's positions
become replay-buffer rows (and, for the ``learn/*`` diagnostics, where self-play diagnoses them).

The value head predicts the score still to come from a position, ``value_scale`` times its
output; the search adds it to the score already banked (``core.search``). The options:

- ``monte_carlo``: the undiscounted return-to-go ``final_score - score_t`` (``value_targets``),
  the quantity the search backs up; unbiased, but its spread grows with the games' length.
- ``n_step``: ``sum_{i < n, t + i < T} gamma^i r_{t+i} + gamma^n v_{t+n}``, bootstrapped from
  the value ``v`` of the position ``n`` moves later (none past the end of the game). ``trimcts``
  reports no value of its root, so ``v`` is the network's value of that position when the
  episode reaches the learner (its newest weights); a record that carries ``root_values`` (a
  search that reports them) is bootstrapped from those.
- ``discounted``: the discounted return-to-go ``sum_i gamma^i r_{t+i}`` to the end of the
  game. The search still adds it to the banked score as if undiscounted, so it plans with a
  shorter horizon than the game's.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from alphatriangle.core.buffer import value_targets
from alphatriangle.core.config import TrainConfig
from alphatriangle.core.muzero.replay import n_step_targets
from alphatriangle.core.selfplay import EpisodeRecord


def discounted_returns(rewards: np.ndarray, discount: float) -> np.ndarray:
    """float32 ``[T]``: ``out[t] = sum_{i >= 0, t + i < T} discount^i rewards[t + i]``,
    accumulated in float64 from the end."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be 1-D [T], got shape {rewards.shape}")
    out = np.zeros(len(rewards), dtype=np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + discount * running
        out[t] = running
    return out.astype(np.float32)


def needs_bootstrap(train: TrainConfig) -> bool:
    """Whether ``train.value_target`` reads values of later positions (``root_values``)."""
    return train.value_target == "n_step"


def has_bootstrap(record: EpisodeRecord) -> bool:
    """Whether the record carries a value for each of its positions."""
    return record.root_values.shape == (record.length,)


def with_bootstrap(record: EpisodeRecord, values: np.ndarray) -> EpisodeRecord:
    """``record`` with ``values [T]`` (estimates of the score still to come from each
    position) as its ``root_values``."""
    values = np.asarray(values, dtype=np.float32)
    if values.shape != (record.length,):
        raise ValueError(f"{values.shape} values for an episode of {record.length} positions")
    return dataclasses.replace(record, root_values=values)


def alphazero_value_targets(record: EpisodeRecord, train: TrainConfig) -> np.ndarray:
    """The value target float32 ``[T]`` of each position of ``record`` under
    ``train.value_target`` (see the module's documentation). ``n_step`` needs a record that
    ``has_bootstrap``."""
    if train.value_target == "monte_carlo":
        return value_targets(record.rewards)
    if train.value_target == "discounted":
        return discounted_returns(record.rewards, train.value_discount)
    if not has_bootstrap(record):
        raise ValueError(
            "n-step value targets need a value of every position (root_values) of the "
            f"episode; it has {record.root_values.shape[0]} for {record.length} positions"
        )
    return n_step_targets(
        record.rewards, record.root_values, train.value_discount, train.value_n_steps
    )
