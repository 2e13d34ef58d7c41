"""Can MuZero's reward head tell a clearing move from the others? An offline measurement.

Run: ``.venv/bin/python bench/muzero_reward.py`` (opt-in; a few minutes on 2 busy cores).

Positions of uniformly random play (seeds ``0..``) with the real reward of every legal move;
batches of (position, move, reward) with ``--clear-share`` of clearing moves. For each reward
read, a fresh ``MuZeroNet`` (the default ``[model]``) is trained on the reward loss alone
(``h`` then one ``g`` step, cross-entropy against the two-hot target) for ``--steps`` steps of
``--batch`` with AdamW at 1e-3, then the ``muzero/*`` diagnostics of ``core.muzero.probe`` are
taken on held-out positions that each offer a clear (seeds ``50_000..``):

- ``pooled``: the reward from ``mean ⊕ max`` pooled over ``s'`` (the head before
  ``reward_read``);
- ``window``: ``reward_read = "cells"`` with every cell of the anchor's window read (what the
  search reads below the deal, where the shape is unknown);
- ``footprint``: ``reward_read = "cells"`` reading only the cells the shape covers (what the
  search reads while the hand is known, and the trainer at those steps).

Prints one row each: ``rank_clear`` (the move with the highest predicted reward clears),
``rank_pairs`` (clearing above non-clearing, per pair), ``q_spread`` (max - min of ``r + gamma v``
over the legal moves; the value head is untrained here, so it is the reward's spread) and the
seconds it took.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch
from trianglengin import GameState

from alphatriangle.core.config import MuZeroConfig
from alphatriangle.core.features import extract_batch, feature_spec
from alphatriangle.core.muzero.network import MuZeroNet, cell_masks
from alphatriangle.core.muzero.probe import (
    ClearProbe,
    clear_probe,
    move_rewards,
    ranking,
)
from alphatriangle.core.muzero.replay import CLEAR_REWARD
from alphatriangle.core.muzero.support import from_logits, to_support
from alphatriangle.core.muzero.training import cross_entropy

READS = ("pooled", "window", "footprint")


@dataclass(frozen=True)
class Pairs:
    """Training pairs: the position (an index into its features), the move, its reward,
    whether it clears."""

    grid: np.ndarray
    other: np.ndarray
    position: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    clears: np.ndarray


def random_play_pairs(positions: int, seed: int) -> Pairs:
    """Every legal move of ``positions`` positions of uniformly random games (seeds ``seed``,
    ``seed + 1``, ...), with its reward."""
    action_dim = feature_spec().action_dim
    grids: list[np.ndarray] = []
    others: list[np.ndarray] = []
    positions_of: list[np.ndarray] = []
    actions: list[np.ndarray] = []
    rewards: list[np.ndarray] = []
    game = seed
    while len(grids) < positions:
        rng = np.random.default_rng(game)
        state = GameState(initial_seed=game)
        while not state.is_over() and len(grids) < positions:
            grid, other = extract_batch([state])
            gains = move_rewards(state, action_dim)
            legal = np.array(sorted(state.valid_actions()))
            positions_of.append(np.full(len(legal), len(grids)))
            grids.append(grid[0])
            others.append(other[0])
            actions.append(legal)
            rewards.append(gains[legal])
            state.step(int(legal[rng.integers(len(legal))]))
        game += 1
    reward = np.concatenate(rewards).astype(np.float32)
    return Pairs(
        np.stack(grids),
        np.stack(others),
        np.concatenate(positions_of),
        np.concatenate(actions).astype(np.int64),
        reward,
        reward >= CLEAR_REWARD,
    )


def train_reward(
    read: str, pairs: Pairs, steps: int, batch: int, clear_share: float, seed: int
) -> MuZeroNet:
    """A fresh network trained on the reward loss alone, each batch ``clear_share`` clears."""
    torch.manual_seed(seed)
    mz = MuZeroConfig(reward_read="pooled" if read == "pooled" else "cells")
    model = MuZeroNet(muzero_cfg=mz)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    clearing, other_moves = np.flatnonzero(pairs.clears), np.flatnonzero(~pairs.clears)
    n_clear = round(batch * clear_share)
    model.train()
    for _ in range(steps):
        idx = np.concatenate(
            [rng.choice(clearing, n_clear), rng.choice(other_moves, batch - n_clear)]
        )
        where = pairs.position[idx]
        grid, other = torch.from_numpy(pairs.grid[where]), torch.from_numpy(pairs.other[where])
        action = torch.from_numpy(pairs.action[idx])
        mask = None
        if read == "footprint":
            mask = torch.from_numpy(
                cell_masks(pairs.other[where], pairs.action[idx], 0, model.action_dim)
            )
        logits, _ = model.dynamics(model.represent(grid, other), action, mask)
        target = to_support(torch.from_numpy(pairs.reward[idx]), mz.reward_support)
        loss = cross_entropy(logits, target).mean()
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    return model.eval()


def measure(model: MuZeroNet, read: str, probe: ClearProbe) -> tuple[float, float, float]:
    """``(rank_clear, rank_pairs, reward spread)`` on the probe, reading as ``read``."""
    rows, moves = np.nonzero(probe.legal)
    with torch.inference_mode():
        action = torch.from_numpy(moves)
        s = model.represent(torch.from_numpy(probe.grid), torch.from_numpy(probe.other))
        mask = None
        if read == "footprint":
            mask = torch.from_numpy(cell_masks(probe.other[rows], moves, 0, model.action_dim))
        logits, _ = model.dynamics(s[torch.from_numpy(rows)], action, mask)
        predicted = from_logits(logits).double().numpy()
    rewards = np.full(probe.legal.shape, np.nan)
    rewards[rows, moves] = predicted
    top, pairs = ranking(rewards, probe.clears, probe.legal)
    spread = float((np.nanmax(rewards, axis=1) - np.nanmin(rewards, axis=1)).mean())
    return top, pairs, spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=4000, help="training positions")
    parser.add_argument("--probe", type=int, default=200, help="held-out clear positions")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--clear-share", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reads", nargs="+", choices=READS, default=list(READS))
    args = parser.parse_args()
    torch.set_num_threads(1)

    start = time.perf_counter()
    pairs = random_play_pairs(args.positions, seed=0)
    probe = clear_probe(range(50_000, 60_000), args.probe, every=2)
    offering = len(probe.grid)
    print(
        f"{args.positions} positions, {len(pairs.action)} moves ({pairs.clears.mean():.1%} clear); "
        f"probe: {offering} positions offering a clear; {time.perf_counter() - start:.0f} s"
    )
    print(f"{'read':<10} {'rank_clear':>10} {'rank_pairs':>10} {'q_spread':>9} {'seconds':>8}")
    for read in args.reads:
        start = time.perf_counter()
        model = train_reward(read, pairs, args.steps, args.batch, args.clear_share, args.seed)
        top, pair_share, spread = measure(model, read, probe)
        seconds = time.perf_counter() - start
        print(f"{read:<10} {top:>10.3f} {pair_share:>10.3f} {spread:>9.3f} {seconds:>8.0f}")


if __name__ == "__main__":
    main()
