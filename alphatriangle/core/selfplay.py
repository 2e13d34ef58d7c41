"""Self-play: ``SelfPlayGames`` advances many games together, their searches in lockstep (one
network call for the pending leaves of all their trees), with any algorithm's ``Searcher``;
``play_episode`` is the one-game case of AlphaZero's."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from trianglengin import EnvConfig, GameState

from alphatriangle.core.config import MCTSConfig
from alphatriangle.core.features import extract_features, feature_spec, valid_mask_from_grid
from alphatriangle.core.search import (
    Evaluator,
    Searcher,
    SearchSettings,
    choose_action,
    tree_searcher,
)

TRAINING_SEED_FLOOR = 1 << 20
"""Training games use seeds at or above this, so low seeds stay held out for evaluation."""


@dataclass(frozen=True)
class EpisodeRecord:
    """One finished episode; ``T`` = moves played, ``A`` = actions, ``C, H, W`` = grid planes.

    Attributes:
        grid: float32 ``[T, C, H, W]`` grid features before each move.
        other: float32 ``[T, F]`` extra features before each move.
        policy: float32 ``[T, A]`` each search's policy target (sums to 1): PUCT's root visit
            distribution, or Gumbel's improved policy.
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
        actions: int64 ``[T]`` the moves played.
        root_values: float32 ``[T]`` each search's value of its root, an estimate of the return
            from that position (MuZero bootstraps its value targets from it; AlphaZero's search
            reports none, and its records hold an empty array).
        weight_versions: int64 ``[T]`` the version of the network weights that searched each
            move (``SelfPlayGames.weight_version`` then); an empty array where nobody set one.
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
    actions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    root_values: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    weight_versions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass
class _Game:
    """One game in progress and what its record will hold."""

    seed: int
    state: GameState
    rng: np.random.Generator
    searches: Any
    """The searcher's object for this game."""
    grids: list[np.ndarray] = field(default_factory=list)
    others: list[np.ndarray] = field(default_factory=list)
    policies: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    depths: list[float] = field(default_factory=list)
    root_values: list[float] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    cleared: int = 0
    banked_moves: int = 0
    """Moves searched by earlier searchers (``SelfPlayGames.set_searcher``)..."""
    banked_simulations: int = 0
    """... and the simulations they ran."""


class SelfPlayGames:
    """Up to ``games`` self-play games at once, advanced one move each per ``step()``.

    Every game is the one it would be alone: its own generator (``default_rng(seed)``, for move
    sampling and whatever its searches draw) and its own search object (``searcher.game``).
    Only the network calls are shared: the searches of all running games advance in lockstep.
    A move is the searcher's choice (Gumbel) or drawn from the visit distribution at the
    searcher's ``settings.temperature`` for the first ``settings.temperature_moves`` moves,
    then the most visited. A game that ends is returned by that ``step()`` and the next seed of
    ``seeds`` starts in its slot; when the seeds run out the slots empty.
    """

    def __init__(
        self,
        searcher: Searcher[Any],
        seeds: Iterable[int],
        games: int,
        *,
        env_cfg: EnvConfig | None = None,
    ) -> None:
        if games < 1:
            raise ValueError(f"games must be at least 1, got {games}")
        self.searcher = searcher
        self.env_cfg = env_cfg
        self.spec = feature_spec(env_cfg)
        self._seeds: Iterator[int] = iter(seeds)
        self._running: list[_Game] = []
        self.weight_version = -1
        """Version of the searcher's network weights, recorded with every move (whoever loads
        new weights into the network sets it), so the replay buffer knows each position's age."""
        # Games over before their first move (nothing to search) come out of the first step().
        self._ended_at_start = self._fill(games)

    @property
    def running(self) -> int:
        """Games in progress."""
        return len(self._running)

    def _fill(self, slots: int) -> list[EpisodeRecord]:
        """Start games in up to ``slots`` free slots; games over before their first move are
        returned at once."""
        ended = []
        while len(self._running) < slots:
            seed = next(self._seeds, None)
            if seed is None:
                break
            rng = np.random.default_rng(seed)
            state = GameState(self.env_cfg, initial_seed=seed)
            game = _Game(seed, state, rng, self.searcher.game(rng))
            game.scores.append(state.game_score())
            if state.is_over():
                ended.append(self._record(game))
            else:
                self._running.append(game)
        return ended

    def set_searcher(self, searcher: Searcher[Any]) -> None:
        """Search the next moves of every game with ``searcher`` (of the same kind: the games'
        search objects carry over), e.g. with another number of simulations."""
        done = self.searcher.settings.simulations
        for game in self._running:
            moves = len(game.policies)
            game.banked_simulations += (moves - game.banked_moves) * done
            game.banked_moves = moves
        self.searcher = searcher

    def step(self) -> list[EpisodeRecord]:
        """One move in every running game; the records of the games that ended, in slot order."""
        ended, self._ended_at_start = self._ended_at_start, []
        if not self._running:
            return ended
        slots = len(self._running)
        results = self.searcher.search(
            [g.searches for g in self._running], [g.state for g in self._running]
        )
        still = []
        settings = self.searcher.settings
        for game, result in zip(self._running, results, strict=True):
            grid, other = extract_features(game.state)
            action = result.action
            if action is None:  # PUCT: sample the first moves from the visits, then argmax
                sampled = len(game.policies) < settings.temperature_moves
                temperature = settings.temperature if sampled else None
                action = choose_action(result.policy, temperature, game.rng)
            game.searches = self.searcher.played(game.searches, game.state, action, result)
            game.state.step(action)
            game.cleared += game.state.get_last_cleared_triangles()
            game.grids.append(grid)
            game.others.append(other)
            game.policies.append(result.policy)
            game.actions.append(action)
            game.masks.append(valid_mask_from_grid(grid[None])[0])
            game.scores.append(game.state.game_score())
            game.depths.append(result.depth)
            game.versions.append(self.weight_version)
            if result.root_value is not None:
                game.root_values.append(result.root_value)
            if game.state.is_over():
                ended.append(self._record(game))
            else:
                still.append(game)
        self._running = still
        ended.extend(self._fill(slots))
        return ended

    def play(self) -> list[EpisodeRecord]:
        """Step until every seed's game has ended; the records in the order they ended."""
        records = self.step()
        while self.running:
            records.extend(self.step())
        return records

    def _record(self, game: _Game) -> EpisodeRecord:
        spec = self.spec
        length = len(game.policies)
        score_arr = np.asarray(game.scores, dtype=np.float64)
        return EpisodeRecord(
            grid=np.stack(game.grids) if length else np.zeros((0, *spec.grid_shape), np.float32),
            other=np.stack(game.others) if length else np.zeros((0, spec.other_dim), np.float32),
            policy=np.stack(game.policies)
            if length
            else np.zeros((0, spec.action_dim), np.float32),
            valid_mask=np.stack(game.masks) if length else np.zeros((0, spec.action_dim), bool),
            scores=score_arr.astype(np.float32),
            rewards=np.diff(score_arr).astype(np.float32),
            score=float(score_arr[-1]),
            length=length,
            triangles_cleared=game.cleared,
            simulations=game.banked_simulations
            + (length - game.banked_moves) * self.searcher.settings.simulations,
            search_depth=float(np.mean(game.depths)) if game.depths else 0.0,
            seed=game.seed,
            actions=np.asarray(game.actions, dtype=np.int64),
            root_values=np.asarray(game.root_values, dtype=np.float32),
            weight_versions=np.asarray(game.versions, dtype=np.int64),
        )


def play_episodes(
    evaluator: Evaluator,
    mcts_cfg: MCTSConfig,
    seeds: Iterable[int],
    games: int,
    *,
    noise: bool = True,
    temperature_moves: int | None = None,
    env_cfg: EnvConfig | None = None,
) -> list[EpisodeRecord]:
    """Every seed's AlphaZero episode, ``games`` at a time (``SelfPlayGames`` with the
    ``tree_searcher`` of ``mcts_cfg``), in the order they end; ``temperature_moves`` replaces
    ``mcts_cfg.temperature_moves`` when given."""
    settings = SearchSettings.of(mcts_cfg, noise=noise)
    if temperature_moves is not None:
        settings = replace(settings, temperature_moves=temperature_moves)
    return SelfPlayGames(tree_searcher(evaluator, settings), seeds, games, env_cfg=env_cfg).play()


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

    The first ``temperature_moves`` moves (``mcts_cfg.temperature_moves`` when None) of a PUCT
    search are sampled from the visit distribution at ``mcts_cfg.temperature``; later moves take
    the most visited action; a Gumbel search plays its own choice. Root noise (drawn from the
    game's generator) is on when ``noise``. Every search is a ``GameSearch`` one: it cannot
    know the hands the game deals next, and reuses the played move's subtree (PUCT with
    ``mcts_cfg.tree_reuse``) only until the game deals a new hand.
    """
    [record] = play_episodes(
        evaluator,
        mcts_cfg,
        [seed],
        1,
        noise=noise,
        temperature_moves=temperature_moves,
        env_cfg=env_cfg,
    )
    return record
