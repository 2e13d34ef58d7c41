"""What the search tests share: an evaluator whose values differ by move, positions, a network."""

from __future__ import annotations

import torch
from trianglengin import GameState

from alphatriangle.core.config import ModelConfig
from alphatriangle.core.network import AlphaTriangleNet
from alphatriangle.core.search import UniformEvaluator, fair_root


class MobilityEvaluator(UniformEvaluator):
    """Uniform priors; value = banked score + 0.01 per legal move. The values differ by move,
    and unlike a constant bonus for the pieces in hand, the number of legal moves depends on how
    a refilled hand fits each child's board, so a search that sees the real refills ranks moves
    by them."""

    def value(self, state: GameState) -> float:
        return state.game_score() + 0.01 * len(state.valid_actions())


def positions(count: int) -> list[GameState]:
    """Fair roots of ``count`` different positions (games 0 to 3 lowest-id moves in)."""
    roots = []
    for seed in range(count):
        state = GameState(initial_seed=seed)
        for _ in range(seed % 4):
            state.step(min(state.valid_actions()))
        roots.append(fair_root(state, 100 + seed))
    return roots


def net(seed: int = 0) -> AlphaTriangleNet:
    """The default network, initialised from ``seed``."""
    torch.manual_seed(seed)
    return AlphaTriangleNet(ModelConfig())
