"""Value targets, computed in this one place.

The target of position ``t`` is the full undiscounted return-to-go
``sum(rewards[t:]) = final_score - score_t``, where rewards are ``game_score()`` deltas. This is
what ``trimcts`` needs: it backs up the leaf value unchanged (no per-step rewards, no discount)
and scores a terminal leaf by its final ``game_score()``, so the network's estimate of future
gain, added to the banked score, must estimate the final score. Episodes are tens to a few
hundred moves, so the Monte Carlo return has modest variance, is unbiased, and - unlike an
n-step bootstrapped target - does not depend on stale value predictions of an older network.
"""

from __future__ import annotations

import numpy as np


def value_targets(rewards: np.ndarray) -> np.ndarray:
    """Return-to-go float32 ``[T]`` of rewards ``[T]``: ``out[t] = sum(rewards[t:])``.

    Accumulated in float64 so that long episodes do not drift.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be 1-D [T], got shape {rewards.shape}")
    return np.cumsum(rewards[::-1])[::-1].astype(np.float32)
