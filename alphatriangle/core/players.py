"""Move choosers for evaluation, the games they play on fixed seeds, and their summaries.

Every player implements ``reset(seed)`` (a new game begins) and ``choose(state) -> action``;
``play_game(player, seed)`` plays ``GameState(initial_seed=seed)`` to the end. All players are
deterministic given the game seed: search players use no root noise, take the most visited
move (ties to the lowest action id), and draw their search roots' seeds from a generator seeded
by the game seed (see ``GameSearch``: no search knows the hands the game deals next).
"""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from trianglengin import EnvConfig, GameState

from alphatriangle.core.config import MCTSConfig
from alphatriangle.core.diagnostics import network_outputs
from alphatriangle.core.features import extract_batch, valid_mask_from_grid
from alphatriangle.core.network import AlphaTriangleNet
from alphatriangle.core.search import (
    Evaluator,
    NetworkEvaluator,
    Searcher,
    SearchSettings,
    UniformEvaluator,
    tree_searcher,
)


class Player(Protocol):
    """Chooses moves for one game at a time."""

    def reset(self, seed: int) -> None:
        """A new game with this seed starts."""

    def choose(self, state: GameState) -> int:
        """A legal action of the (non-terminal) ``state``."""
        ...


class RandomPlayer:
    """Uniformly random legal moves, seeded by the game seed."""

    def __init__(self) -> None:
        self._rng = random.Random(0)

    def reset(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def choose(self, state: GameState) -> int:
        return self._rng.choice(sorted(state.valid_actions()))


class GreedyPlayer:
    """The move with the largest immediate ``game_score()`` gain, ties to the lowest id."""

    def reset(self, seed: int) -> None:
        pass

    def choose(self, state: GameState) -> int:
        base = state.game_score()
        best_action, best_gain = -1, -np.inf
        for action in sorted(state.valid_actions()):
            child = state.copy()
            child.step(action)
            gain = child.game_score() - base
            if gain > best_gain:
                best_action, best_gain = action, gain
        return best_action


class SearchPlayer:
    """An algorithm's search (``Searcher``) without root noise: plays the searcher's own choice
    (Gumbel) or the most visited move (ties: lowest id).

    Its searches are one ``searcher.game`` per game, from the game seed's generator;
    ``play_game`` calls ``reset`` between games so that nothing crosses games. The game must be
    stepped with the action ``choose`` returned. ``play_games`` plays many games together.
    """

    def __init__(self, searcher: Searcher[Any]) -> None:
        self.searcher = searcher
        self.reset(0)

    def reset(self, seed: int) -> None:
        self._game = self.game(seed)

    def game(self, seed: int) -> Any:
        """The searcher's object for the game with ``seed``."""
        return self.searcher.game(np.random.default_rng(seed))

    def choose(self, state: GameState) -> int:
        [(action, self._game)] = self.choose_together([self._game], [state])
        return action

    def choose_together(
        self, games: Sequence[Any], states: Sequence[GameState]
    ) -> list[tuple[int, Any]]:
        """The move of each game, their searches in one lockstep, and each game's searcher
        object after that move (``Searcher.played``)."""
        chosen = []
        results = self.searcher.search(games, states)
        for game, state, result in zip(games, states, results, strict=True):
            visits, action = result.visits, result.action
            if action is None:
                action = min(visits, key=lambda a: (-visits[a], a))
            chosen.append((action, self.searcher.played(game, state, action, result)))
        return chosen


class PolicyPlayer:
    """The network's policy alone, without search: the legal move of highest prior (ties: the
    lowest action id), for either algorithm (MuZero: the policy of ``f(h(o))`` on the real
    position). Next to the same network with its search, it shows what the search adds.
    ``play_games`` plays many games together, one forward pass a move for all of them."""

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu") -> None:
        self.model = model
        self.device = torch.device(device)

    def reset(self, seed: int) -> None:
        pass

    def game(self, seed: int) -> None:
        """Nothing is kept per game."""

    def choose(self, state: GameState) -> int:
        [(action, _)] = self.choose_together([None], [state])
        return action

    def choose_together(
        self, games: Sequence[Any], states: Sequence[GameState]
    ) -> list[tuple[int, None]]:
        """The move of each (non-terminal) state, from one forward pass over all of them, and
        (as ``SearchPlayer``'s) each game's object after it: nothing."""
        grid, other = extract_batch(states)
        logits, _ = network_outputs(self.model, grid, other, self.device)
        legal = valid_mask_from_grid(grid)
        chosen: np.ndarray = np.argmax(np.where(legal, logits, -np.inf), axis=1)
        return [(int(a), None) for a in chosen]


class MCTSPlayer(SearchPlayer):
    """AlphaZero's ``trimcts`` search (``tree_searcher``) of ``mcts_cfg.variant``, without
    noise. ``peek=True``: the search knows the future hands (only for measuring what that is
    worth)."""

    def __init__(self, evaluator: Evaluator, mcts_cfg: MCTSConfig, *, peek: bool = False) -> None:
        settings = SearchSettings.of(mcts_cfg, noise=False)
        super().__init__(tree_searcher(evaluator, settings, peek=peek))


def uniform_mcts_player(simulations: int = 128, mcts_cfg: MCTSConfig | None = None) -> MCTSPlayer:
    """PUCT search with uniform priors and the banked score as value (``UniformEvaluator``);
    the baseline stays PUCT whatever ``mcts_cfg.variant`` says."""
    cfg = (mcts_cfg or MCTSConfig()).model_copy(
        update={"simulations": simulations, "variant": "puct"}
    )
    return MCTSPlayer(UniformEvaluator(), cfg)


def network_player(
    model: AlphaTriangleNet, mcts_cfg: MCTSConfig | None = None, device: str | torch.device = "cpu"
) -> MCTSPlayer:
    """The trained agent: ``NetworkEvaluator`` priors and values, search without noise."""
    return MCTSPlayer(NetworkEvaluator(model, device), mcts_cfg or MCTSConfig())


@dataclass(frozen=True)
class GameResult:
    """One finished evaluation game."""

    seed: int
    score: float
    length: int


def play_game(
    player: Player,
    seed: int,
    env_cfg: EnvConfig | None = None,
    between_moves: Callable[[], None] = lambda: None,
) -> tuple[float, int]:
    """Play ``GameState(initial_seed=seed)`` to the end; returns ``(final score, moves)``.
    ``between_moves`` is called before every move (a caller's chance to stop the game)."""
    player.reset(seed)
    state = GameState(env_cfg, initial_seed=seed)
    moves = 0
    while not state.is_over():
        between_moves()
        state.step(player.choose(state))
        moves += 1
    return state.game_score(), moves


GAMES_AT_ONCE = 128
"""Most games a ``SearchPlayer`` plays together in ``play_games`` (each holds a search tree)."""


def play_games(
    player: Player,
    seeds: Iterable[int],
    env_cfg: EnvConfig | None = None,
    between_moves: Callable[[], None] = lambda: None,
) -> list[GameResult]:
    """``play_game`` over ``seeds``, results in seed order; ``between_moves`` is called before
    every move (of all the games played together).

    A ``SearchPlayer`` plays up to ``GAMES_AT_ONCE`` of the games together, their searches in
    lockstep (one network call for the pending leaves of all their trees), and a
    ``PolicyPlayer`` one forward pass a move for all of them; each game is the one
    ``play_game`` plays, as long as the network's output for a state does not depend on the
    other states of its batch.
    """
    seeds = list(seeds)
    if isinstance(player, SearchPlayer | PolicyPlayer):
        return _play_together(player, seeds, env_cfg, between_moves)
    results = []
    for seed in seeds:
        score, length = play_game(player, seed, env_cfg, between_moves)
        results.append(GameResult(seed, score, length))
    return results


def _play_together(
    player: SearchPlayer | PolicyPlayer,
    seeds: list[int],
    env_cfg: EnvConfig | None,
    between_moves: Callable[[], None],
) -> list[GameResult]:
    # A game's state exists only while it runs (a state holds its board and engine, so a
    # million seeds at once would not fit in memory).
    results: dict[int, GameResult] = {}
    waiting = iter(range(len(seeds)))
    running: dict[int, tuple[GameState, Any, int]] = {}  # index -> state, search object, moves
    while True:
        for i in itertools.islice(waiting, GAMES_AT_ONCE - len(running)):
            state = GameState(env_cfg, initial_seed=seeds[i])
            if state.is_over():
                results[i] = GameResult(seeds[i], state.game_score(), 0)
            else:
                running[i] = (state, player.game(seeds[i]), 0)
        if not running:
            if len(results) == len(seeds):
                break
            continue  # every game started this round was over at once
        between_moves()
        games = list(running)
        chosen = player.choose_together(
            [running[i][1] for i in games], [running[i][0] for i in games]
        )
        for i, (action, searches) in zip(games, chosen, strict=True):
            state, _, moves = running[i]
            state.step(action)
            running[i] = (state, searches, moves + 1)
            if state.is_over():
                results[i] = GameResult(seeds[i], state.game_score(), moves + 1)
                del running[i]  # and its tree
    return [results[i] for i in range(len(seeds))]


NETWORK = "network"
POLICY = "policy"
"""The name of ``PolicyPlayer``'s summaries."""


@dataclass(frozen=True)
class Summary:
    """Scores and lengths of one player over the evaluation seeds (same order as the seeds)."""

    player: str
    games: int
    mean: float
    median: float
    std: float
    max: float
    min: float
    mean_length: float
    max_length: int
    scores: list[float]
    lengths: list[int]


def summarize(player: str, results: Sequence[GameResult]) -> Summary:
    """Statistics of finished games; ``std`` is the population standard deviation."""
    scores = [r.score for r in results]
    lengths = [r.length for r in results]
    return Summary(
        player=player,
        games=len(results),
        mean=statistics.fmean(scores),
        median=statistics.median(scores),
        std=statistics.pstdev(scores),
        max=max(scores),
        min=min(scores),
        mean_length=statistics.fmean(lengths),
        max_length=max(lengths),
        scores=scores,
        lengths=lengths,
    )


def evaluate(
    agent: Player,
    mcts_cfg: MCTSConfig,
    seeds: Sequence[int],
    baseline_simulations: int,
    baselines: bool = True,
    between_moves: Callable[[], None] = lambda: None,
) -> dict[str, Summary]:
    """Play ``seeds`` with the trained ``agent`` (``alphatriangle.core.algorithm.agent_player``:
    the run's own search, without noise) and, when ``baselines``, with random, greedy one-step
    and uniform-prior MCTS players (``mcts_cfg``'s settings, PUCT); ``between_moves`` as in
    ``play_games``."""
    players = evaluation_players(agent, mcts_cfg, baseline_simulations, baselines)
    return {
        name: summarize(name, play_games(p, seeds, between_moves=between_moves))
        for name, p in players.items()
    }


def evaluation_players(
    agent: Player, mcts_cfg: MCTSConfig, baseline_simulations: int, baselines: bool
) -> dict[str, Player]:
    """``evaluate``'s players by name, the ``agent`` first (``NETWORK``)."""
    players: dict[str, Player] = {NETWORK: agent}
    if baselines:
        players[f"uniform-mcts-{baseline_simulations}"] = uniform_mcts_player(
            baseline_simulations, mcts_cfg
        )
        players["greedy"] = GreedyPlayer()
        players["random"] = RandomPlayer()
    return players
