"""A fixed set of positions that each offer a line clear, and what MuZero's model predicts on
them: the diagnostic that can see whether the model tells moves apart.

A model whose reward ignores the action predicts the same reward for every move, and then the
search's Q is the same for every move too: it cannot improve on its prior. The value head's
correlation with its targets cannot see that (a predictor that ignores the action scores well on
it), so the probe asks the question the search needs answered: at a position that offers a
clear, does the predicted reward rank a clearing move above the others?

- ``clear_probe(seeds, size)``: positions of uniformly random play from ``seeds`` that offer a
  clear, each with its legal moves and which of them clear (the real game's reward, read by
  stepping a copy of the position with every legal move).
- ``probe_metrics(model, probe, discount)``: one ``dynamics`` and ``predict`` call over every
  legal move of every position, then

  - ``muzero/reward_rank_clear``: the share of positions where the move with the highest
    predicted reward is a clearing one (ranks above every non-clearing move; ties count as
    not above);
  - ``muzero/reward_rank_pairs``: the share of (clearing, non-clearing) move pairs of a position
    whose predicted rewards are in that order, averaged over the positions;
  - ``muzero/q_rank_clear``: ``reward_rank_clear`` of the predicted ``Q(a)`` below (what the
    search's Q sees, the value's noise included);
  - ``muzero/prior_rank_clear``: ``reward_rank_clear`` of the root's policy logits ``f(h(o))``
    (whether the policy has learned to clear);
  - ``muzero/q_spread``: the mean over the positions of ``max - min`` of the predicted
    ``Q(a) = r(s, a) + discount v(s'_a)`` over the position's legal moves (the spread the
    search's normalisation has to work with: about a clear's reward in a model that sees it,
    near zero in one that does not).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from trianglengin import GameState

from alphatriangle import metric_names as m
from alphatriangle.core.features import extract_batch, feature_spec
from alphatriangle.core.muzero.network import MuZeroNet, cell_masks
from alphatriangle.core.muzero.replay import CLEAR_REWARD
from alphatriangle.core.muzero.search import hand_of
from alphatriangle.core.muzero.support import from_logits

PROBE_POSITIONS = 64
"""Positions of the trainer's probe: enough that one position moves the share by 1.6 %, few
enough that all their legal moves (some 6,000) are one quick forward pass."""

PROBE_SEEDS = range(900_000, 901_000)
"""Seeds of the trainer's probe games, far from evaluation's (0..) and self-play's seeds (a
random game offers some 5 positions to the probe, so these are never used up)."""
PROBE_SPACING = 4
"""The probe takes every fourth position of a game that offers a clear: a clear stays on offer
for some moves once a line is nearly full, and neighbours would be near copies."""


@dataclass(frozen=True)
class ClearProbe:
    """``N`` positions, each offering a clear; ``A`` = actions.

    Attributes:
        grid: float32 ``[N, C, H, W]``; other: float32 ``[N, F]`` (the features).
        legal: bool ``[N, A]`` the legal moves.
        clears: bool ``[N, A]`` the legal moves that clear a line.
        rewards: float32 ``[N, A]`` the real game's reward of each legal move (0 elsewhere).
    """

    grid: np.ndarray
    other: np.ndarray
    legal: np.ndarray
    clears: np.ndarray
    rewards: np.ndarray


def move_rewards(state: GameState, action_dim: int) -> np.ndarray:
    """float32 ``[A]``: the reward of each legal move of ``state`` (a copy stepped with it),
    0 for the illegal ones."""
    out = np.zeros(action_dim, dtype=np.float32)
    base = state.game_score()
    for action in state.valid_actions():
        child = state.copy()
        child.step(action)
        out[action] = child.game_score() - base
    return out


def clear_probe(seeds: Sequence[int], size: int, every: int = 1) -> ClearProbe:
    """The first ``size`` positions offering a clear, in uniformly random games of ``seeds``
    (one after the other, each game's moves drawn from a generator of its seed), every
    ``every``-th such position of a game taken. Fewer when the games run out."""
    grids: list[np.ndarray] = []
    others: list[np.ndarray] = []
    rewards: list[np.ndarray] = []
    legals: list[np.ndarray] = []
    action_dim = feature_spec().action_dim
    for seed in seeds:
        rng = np.random.default_rng(seed)
        state = GameState(initial_seed=seed)
        offered = 0
        while not state.is_over() and len(grids) < size:
            grid, other = extract_batch([state])
            actions = sorted(state.valid_actions())
            gains = move_rewards(state, action_dim)
            if (gains >= CLEAR_REWARD).any():
                if offered % every == 0:
                    legal = np.zeros(len(gains), dtype=bool)
                    legal[actions] = True
                    grids.append(grid[0])
                    others.append(other[0])
                    rewards.append(gains)
                    legals.append(legal)
                offered += 1
            state.step(int(actions[rng.integers(len(actions))]))
        if len(grids) >= size:
            break
    legal_arr = np.stack(legals)
    reward_arr = np.stack(rewards)
    return ClearProbe(
        np.stack(grids),
        np.stack(others),
        legal_arr,
        legal_arr & (reward_arr >= CLEAR_REWARD),
        reward_arr,
    )


def predicted_rewards_and_q(
    model: MuZeroNet, grid: np.ndarray, other: np.ndarray, legal: np.ndarray, discount: float
) -> tuple[np.ndarray, np.ndarray]:
    """float64 ``[N, A]`` predicted reward and ``r + discount v(s')`` of every legal move
    (nan elsewhere), from one representation and one dynamics call over all legal moves. The
    reward reads the footprint of each move's shape (the hand is known at a real position);
    with Stochastic MuZero, ``v`` after a move that plays the hand's last piece is the
    afterstate's Q."""
    device = next(model.parameters()).device
    rows, moves = np.nonzero(legal)
    with torch.inference_mode():
        s = model.represent(torch.from_numpy(grid).to(device), torch.from_numpy(other).to(device))
        actions = torch.from_numpy(moves).to(device)
        masks = cell_masks(other[rows], moves, 0, model.action_dim)
        mask = torch.from_numpy(masks).to(device)
        reward_logits, nxt = model.dynamics(s[torch.from_numpy(rows).to(device)], actions, mask)
        _, value_logits = model.predict(nxt)
        if model.muzero_cfg.stochastic:
            # A move that plays the hand's last piece reaches an afterstate: its value is Q.
            q_logits, _ = model.afterstate_predict(nxt)
            last = torch.from_numpy(np.array([hand_of(o)[0] == 1 for o in other[rows]]))
            value_logits = torch.where(last.to(device)[:, None], q_logits, value_logits)
        reward = from_logits(reward_logits).double().cpu().numpy()
        value = from_logits(value_logits).double().cpu().numpy()
    rewards = np.full(legal.shape, np.nan)
    q = np.full(legal.shape, np.nan)
    rewards[rows, moves] = reward
    q[rows, moves] = reward + discount * value
    return rewards, q


def ranking(rewards: np.ndarray, clears: np.ndarray, legal: np.ndarray) -> tuple[float, float]:
    """``(top, pairs)`` of predicted ``rewards [N, A]`` (read where ``legal``): ``top`` the share
    of rows whose best clearing move is predicted strictly above every non-clearing legal move;
    ``pairs`` the mean over rows of the share of (clearing, non-clearing) pairs predicted in
    that order (ties: not in order). Rows without a non-clearing move count as ranked."""
    tops, pairs = [], []
    for row_rewards, row_clears, row_legal in zip(rewards, clears, legal, strict=True):
        good = row_rewards[row_clears]
        bad = row_rewards[row_legal & ~row_clears]
        if len(bad) == 0:
            tops.append(1.0)
            pairs.append(1.0)
            continue
        tops.append(float(good.max() > bad.max()))
        pairs.append(float((good[:, None] > bad[None, :]).mean()))
    return float(np.mean(tops)), float(np.mean(pairs))


def probe_metrics(model: MuZeroNet, probe: ClearProbe, discount: float) -> dict[str, float]:
    """The ``muzero/*`` diagnostics of ``model`` (put in eval mode) on ``probe``."""
    model.eval()
    rewards, q = predicted_rewards_and_q(model, probe.grid, probe.other, probe.legal, discount)
    top, pairs = ranking(rewards, probe.clears, probe.legal)
    device = next(model.parameters()).device
    with torch.inference_mode():
        _, logits, _ = model.initial(
            torch.from_numpy(probe.grid).to(device), torch.from_numpy(probe.other).to(device)
        )
    prior = np.where(probe.legal, logits.double().cpu().numpy(), np.nan)
    spread = np.nanmax(q, axis=1) - np.nanmin(q, axis=1)
    return {
        m.MUZERO_REWARD_RANK_CLEAR: top,
        m.MUZERO_REWARD_RANK_PAIRS: pairs,
        m.MUZERO_Q_RANK_CLEAR: ranking(q, probe.clears, probe.legal)[0],
        m.MUZERO_PRIOR_RANK_CLEAR: ranking(prior, probe.clears, probe.legal)[0],
        m.MUZERO_Q_SPREAD: float(spread.mean()),
    }
