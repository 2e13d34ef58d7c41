"""Self-play of one episode with ``trimcts`` MCTS."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from trianglengin import EnvConfig, GameState

from alphatriangle.core.config import MCTSConfig
from alphatriangle.core.features import extract_features, feature_spec, valid_mask_from_grid
from alphatriangle.core.search import Evaluator, GameSearch, choose_action, visit_distribution

TRAINING_SEED_FLOOR = 1 << 20
"""Training games use seeds at or above this, so low seeds stay held out for evaluation."""


@dataclass(frozen=True)
class EpisodeRecord:
    """One finished episode; ``T`` = moves played, ``A`` = actions, ``C, H, W`` = grid planes.

    Attributes:
        grid: float32 ``[T, C, H, W]`` grid features before each move.
        other: float32 ``[T, F]`` extra features before each move.
        policy: float32 ``[T, A]`` root visit distribution of each search (sums to 1).
        valid_mask: bool ``[T, A]`` legal actions before each move.
        scores: float32 ``[T + 1]`` ``game_score()`` before each move and at the end.
        rewards: float32 ``[T]`` score deltas ``scores[t + 1] - scores[t]``.
        score: final ``game_score()``.
        length: ``T``.
        triangles_cleared: triangles cleared over the episode.
        simulations: MCTS simulations run over the episode.
        search_depth: mean over moves of the search's average simulation depth.
        seed: the game seed.
        weight_version: version of the network weights that played it (-1: unknown/none).
    """

    grid: np.ndarray
    other: np.ndarray
    policy: np.ndarray
    valid_mask: np.ndarray
    scores: np.ndarray
    rewards: np.ndarray
    score: float
    length: int
    triangles_cleared: int
    simulations: int
    search_depth: float
    seed: int
    weight_version: int = -1


def play_episode(
    evaluator: Evaluator,
    mcts_cfg: MCTSConfig,
    seed: int,
    *,
    noise: bool = True,
    temperature_moves: int | None = None,
    env_cfg: EnvConfig | None = None,
) -> EpisodeRecord:
    """Play one game from ``GameState(initial_seed=seed)`` choosing every move by MCTS.

    The first ``temperature_moves`` moves (``mcts_cfg.temperature_moves`` when None) are sampled
    from the visit distribution at ``mcts_cfg.temperature``; later moves take the most visited
    action. Root Dirichlet noise is on when ``noise``. Every search is a ``GameSearch`` one: it
    cannot know the hands the game deals next, and reuses the played move's subtree (when
    ``mcts_cfg.tree_reuse``) only until the game deals a new hand.
    """
    spec = feature_spec(env_cfg)
    moves_with_temperature = (
        mcts_cfg.temperature_moves if temperature_moves is None else temperature_moves
    )
    rng = np.random.default_rng(seed)
    state = GameState(env_cfg, initial_seed=seed)
    searches = GameSearch(evaluator, mcts_cfg, rng, noise=noise)
    grids: list[np.ndarray] = []
    others: list[np.ndarray] = []
    policies: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    scores = [state.game_score()]
    depths: list[float] = []
    cleared = 0
    while not state.is_over():
        grid, other = extract_features(state)
        visits, depth = searches.run(state)
        policy = visit_distribution(visits, spec.action_dim)
        mask = valid_mask_from_grid(grid[None])[0]
        temperature = mcts_cfg.temperature if len(policies) < moves_with_temperature else None
        action = choose_action(policy, temperature, rng)
        searches.played(state, action)
        state.step(action)
        cleared += state.get_last_cleared_triangles()
        grids.append(grid)
        others.append(other)
        policies.append(policy)
        masks.append(mask)
        scores.append(state.game_score())
        depths.append(depth)

    length = len(policies)
    score_arr = np.asarray(scores, dtype=np.float64)
    return EpisodeRecord(
        grid=np.stack(grids) if grids else np.zeros((0, *spec.grid_shape), np.float32),
        other=np.stack(others) if others else np.zeros((0, spec.other_dim), np.float32),
        policy=np.stack(policies) if policies else np.zeros((0, spec.action_dim), np.float32),
        valid_mask=np.stack(masks) if masks else np.zeros((0, spec.action_dim), bool),
        scores=score_arr.astype(np.float32),
        rewards=np.diff(score_arr).astype(np.float32),
        score=float(score_arr[-1]),
        length=length,
        triangles_cleared=cleared,
        simulations=length * mcts_cfg.simulations,
        search_depth=float(np.mean(depths)) if depths else 0.0,
        seed=seed,
    )
