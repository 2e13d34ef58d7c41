"""The search: ``trimcts`` MCTS, the leaf evaluators it calls, and the choice of a move.

- ``GameSearch`` runs the searches of one game, each from a root that does not know the real
  game's future hands (``fair_root``), reusing subtrees only while they match the real game;
  ``search_games`` runs the next search of many games in lockstep, one network call for the
  pending leaves of all their trees (``search_many``, the patched ``trimcts`` entry point);
- ``search(root, evaluator, mcts_cfg, ...)`` runs one search from ``root`` (``trimcts.run_mcts``,
  one dict of priors per leaf);
- ``UniformEvaluator`` and ``NetworkEvaluator`` value leaves, as dicts (``evaluate_batch``) or
  as dense arrays (``evaluate_arrays``);
- ``search_gumbel_many`` runs Gumbel searches in lockstep (``mcts.variant = "gumbel"``): the
  patched ``trimcts`` picks the move and the improved policy that is the training target;
- ``visit_distribution`` and ``choose_action`` turn PUCT's visit counts into a policy and a move.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
import torch
import trimcts.trimcts_cpp as engine
from trianglengin import GameState
from trimcts import SearchConfiguration, run_mcts

from alphatriangle.core.config import MCTSConfig
from alphatriangle.core.features import extract_batch, valid_mask_from_grid
from alphatriangle.core.network import AlphaTriangleNet

PolicyValue = tuple[dict[int, float], float]
"""A prior over the state's legal actions, and the state's value on the final-score scale."""

PriorsValues = tuple[np.ndarray, np.ndarray]
"""Priors float32 ``[B, A]`` by action id (zero off the legal actions) and values float32 ``[B]``."""


class Evaluator(Protocol):
    """What the searches call to evaluate leaves: ``trimcts.run_mcts`` the dict methods, the
    lockstep search (``search_many``) ``evaluate_arrays``. Both give the same numbers."""

    def evaluate_state(self, state: GameState) -> PolicyValue: ...

    def evaluate_batch(self, states: list[GameState]) -> list[PolicyValue]: ...

    def evaluate_arrays(self, states: list[GameState]) -> PriorsValues: ...


def action_dim(state: GameState) -> int:
    """Number of action ids of ``state``'s game (360 with the default ``EnvConfig``)."""
    cfg = state.env_config
    return int(cfg.NUM_SHAPE_SLOTS * cfg.ROWS * cfg.COLS)


def dense(results: Sequence[PolicyValue], actions: int) -> PriorsValues:
    """``evaluate_batch`` results as ``evaluate_arrays`` ones."""
    priors = np.zeros((len(results), actions), dtype=np.float32)
    for row, (policy, _) in zip(priors, results, strict=True):
        row[np.fromiter(policy.keys(), dtype=np.int64, count=len(policy))] = np.fromiter(
            policy.values(), dtype=np.float64, count=len(policy)
        )
    values = np.array([value for _, value in results], dtype=np.float64).astype(np.float32)
    return priors, values


class UniformEvaluator:
    """Uniform prior over the legal moves; value = the score already banked.

    The value is on the scale of ``trimcts``' terminal outcome (the final game score), so a
    search with this evaluator does not prefer ending the game over continuing it.
    """

    def evaluate_state(self, state: GameState) -> PolicyValue:
        actions = state.valid_actions()
        prior = 1.0 / len(actions) if actions else 0.0
        return dict.fromkeys(actions, prior), state.game_score()

    def evaluate_batch(self, states: list[GameState]) -> list[PolicyValue]:
        return [self.evaluate_state(s) for s in states]

    def evaluate_arrays(self, states: list[GameState]) -> PriorsValues:
        return dense(self.evaluate_batch(states), action_dim(states[0]))


class NetworkEvaluator:
    """Priors and values from an ``AlphaTriangleNet``, one forward pass per batch of leaves.

    The prior is the softmax of the policy logits over the state's legal actions only. The value
    is ``game_score() + max(0, predicted future gain)``: ``trimcts`` backs up a leaf's value
    unchanged and scores a terminal leaf by its final ``game_score()``, so a non-terminal leaf
    must be valued on the same "final score" scale or the search would prefer ending the game.
    """

    def __init__(self, model: AlphaTriangleNet, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.value_scale = model.cfg.value_scale
        self.evaluations = 0
        """States evaluated so far (for throughput metrics)."""

    def load_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Replace the network's weights (e.g. ones published by the learner)."""
        self.model.load_state_dict(state_dict)
        self.model.eval()

    def evaluate_state(self, state: GameState) -> PolicyValue:
        return self.evaluate_batch([state])[0]

    def evaluate_batch(self, states: Sequence[GameState]) -> list[PolicyValue]:
        """One forward pass over the ``B`` states; per state, (prior over its legal actions, value)."""
        probs, mask, values = self._forward(states)
        results: list[PolicyValue] = []
        for i in range(len(states)):
            actions = np.flatnonzero(mask[i])
            policy = dict(zip(actions.tolist(), probs[i, actions].tolist(), strict=True))
            results.append((policy, float(values[i])))
        return results

    def evaluate_arrays(self, states: Sequence[GameState]) -> PriorsValues:
        """``evaluate_batch`` as dense arrays, without a dict per state."""
        probs, _, values = self._forward(states)
        return probs, values.astype(np.float32)

    def _forward(self, states: Sequence[GameState]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Priors float32 ``[B, A]`` (zero off the legal actions), the legal mask, and values
        float64 ``[B]`` (banked score + clipped predicted gain)."""
        grid, other = extract_batch(states)
        mask = valid_mask_from_grid(grid)  # [B, A]
        with torch.inference_mode():
            logits, value = self.model(
                torch.from_numpy(grid).to(self.device), torch.from_numpy(other).to(self.device)
            )
            mask_t = torch.from_numpy(mask).to(self.device)
            logits = logits.masked_fill(~mask_t, -torch.inf)
            # A terminal state has no legal action; keep its row finite (its dict is empty anyway).
            logits = logits.masked_fill(~mask_t.any(dim=1, keepdim=True), 0.0)
            probs = torch.softmax(logits, dim=1).cpu().numpy()
            gain = (value.clamp(min=0.0) * self.value_scale).cpu().numpy()
        self.evaluations += len(states)
        banked = np.fromiter((s.game_score() for s in states), dtype=np.float64, count=len(states))
        return probs, mask, banked + gain.astype(np.float64)


@dataclass(frozen=True)
class SearchResult:
    """The search of one real game state; ``A`` = action ids.

    Attributes:
        visits: simulations that went through each legal root action.
        policy: float32 ``[A]``, the training target: PUCT's visit distribution, or Gumbel's
            improved policy ``softmax(logits + sigma(completed Q))`` over the legal actions.
        action: the move Gumbel search chose (the last survivor of sequential halving); None
            for PUCT, whose move the caller picks from ``policy``.
        depth: mean depth of the search's simulations.
        root_value: the search's value of the root (MuZero's latent search); None when the
            search reports none (the ``trimcts`` searches).
    """

    visits: dict[int, int]
    policy: np.ndarray
    action: int | None
    depth: float
    root_value: float | None = None


def fair_root(state: GameState, seed: int) -> GameState:
    """A search root with ``state``'s board, hand, score and step, whose future hands come
    from ``seed`` instead of the real game's generator (which ``copy()`` would carry along)."""
    root = state.copy()
    root.reseed(seed)
    return root


def hand_size(state: GameState) -> int:
    """Pieces in the hand; a move from a hand of one is followed by a random refill."""
    return sum(shape is not None for shape in state.get_shapes())


class GameSearch:
    """The searches of one game, none of which can know the pieces the game has not dealt yet.

    The hand is refilled at random once its last piece is played, and a state's ``copy()``
    carries the generator that deals the refills, so a tree grown from copies of the real game
    would deal itself exactly the hands the real game deals next. Each search here starts from
    ``fair_root(state, seed)`` instead, with ``seed`` drawn from ``rng`` (the player's generator,
    so that runs stay reproducible): the tree plans over one possible future (a single
    determinization), and two games that differ only in their generators get the same search.

    With ``mcts_cfg.tree_reuse``, the subtree of the played move becomes the next root while it
    still matches the real game: a move that plays the hand's last piece makes the real game
    deal a new hand, and the subtree's states hold a hand of the old determinization, so the
    next search grows a new tree.

    ``peek=True`` is the search as it was before this rule, from copies of the real game, kept
    only to measure what knowing the future was worth (``bench/fair_play.py``).

    With ``mcts_cfg.variant == "gumbel"`` every search grows a new tree, and with ``noise`` its
    root Gumbel noise is drawn from ``rng`` too.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        mcts_cfg: MCTSConfig,
        rng: np.random.Generator,
        *,
        noise: bool,
        peek: bool = False,
    ) -> None:
        self.evaluator = evaluator
        self.mcts_cfg = mcts_cfg
        self.rng = rng
        self.noise = noise
        self.peek = peek
        self._tree: object | None = None
        self._last_action = -1
        self._searched: object | None = None

    def run(self, state: GameState) -> SearchResult:
        """Search the (non-terminal) real ``state``."""
        return search_games([self], [state])[0]

    def _gumbel(self, actions: int) -> np.ndarray:
        """Gumbel search's root noise g(a), float32 ``[A]``, from the player's generator; zeros
        without noise (the search then plays the greedy move)."""
        if not self.noise:
            return np.zeros(actions, np.float32)
        return self.rng.gumbel(size=actions).astype(np.float32)

    def _root(self, state: GameState) -> GameState:
        return state.copy() if self.peek else fair_root(state, int(self.rng.integers(2**32)))

    def played(self, state: GameState, action: int) -> None:
        """The real game plays ``action`` from ``state`` (call before stepping ``state``)."""
        keep = self.mcts_cfg.tree_reuse and (self.peek or hand_size(state) > 1)
        self._tree, self._last_action = (self._searched, action) if keep else (None, -1)
        self._searched = None


GameT = TypeVar("GameT")


class Searcher(Protocol[GameT]):
    """An algorithm's search as self-play and the players drive it: an object per game
    (``game``, from the game's generator), the next search of many games at once (``search``,
    on their real, non-terminal states), and the move each game played (``played``).
    ``mcts_cfg`` gives the simulations and the temperature of moves chosen from visits."""

    mcts_cfg: MCTSConfig

    def game(self, rng: np.random.Generator) -> GameT: ...

    def search(self, games: Sequence[GameT], states: Sequence[GameState]) -> list[SearchResult]: ...

    def played(self, game: GameT, state: GameState, action: int) -> None: ...


class TreeSearcher:
    """AlphaZero's search on the real game (``trimcts``, PUCT or Gumbel as ``mcts_cfg.variant``
    says): a ``GameSearch`` per game, all of them in one lockstep (``search_games``)."""

    def __init__(
        self, evaluator: Evaluator, mcts_cfg: MCTSConfig, *, noise: bool, peek: bool = False
    ) -> None:
        self.evaluator = evaluator
        self.mcts_cfg = mcts_cfg
        self.noise = noise
        self.peek = peek

    def game(self, rng: np.random.Generator) -> GameSearch:
        return GameSearch(self.evaluator, self.mcts_cfg, rng, noise=self.noise, peek=self.peek)

    def search(
        self, games: Sequence[GameSearch], states: Sequence[GameState]
    ) -> list[SearchResult]:
        return search_games(games, states)

    def played(self, game: GameSearch, state: GameState, action: int) -> None:
        game.played(state, action)


def search_games(games: Sequence[GameSearch], states: Sequence[GameState]) -> list[SearchResult]:
    """The next search of each game (``games[i]`` on its real, non-terminal ``states[i]``), all
    in one lockstep: ``search_many`` (PUCT) or ``search_gumbel_many`` (Gumbel), as the games'
    ``mcts_cfg.variant`` says.

    Each game's result is the one its own ``run`` would give with an evaluator whose output for
    a state does not depend on the rest of the batch. The games must share their evaluator,
    search settings and noise.
    """
    if not games:
        return []
    first = games[0]
    for game in games[1:]:
        if (game.evaluator, game.mcts_cfg, game.noise) != (
            first.evaluator,
            first.mcts_cfg,
            first.noise,
        ):
            raise ValueError("games searched together must share evaluator, settings and noise")
    roots = [game._root(state) for game, state in zip(games, states, strict=True)]
    if first.mcts_cfg.variant == "gumbel":
        actions = action_dim(states[0])
        gumbel = np.stack([game._gumbel(actions) for game in games])
        return search_gumbel_many(roots, first.evaluator, first.mcts_cfg, gumbel)
    results = search_many(
        roots,
        first.evaluator,
        first.mcts_cfg,
        noise=first.noise,
        previous=[game._tree for game in games],
        last_actions=[game._last_action for game in games],
    )
    out = []
    for game, root, (visits, handle, depth) in zip(games, roots, results, strict=True):
        game._searched = handle
        policy = visit_distribution(visits, action_dim(root))
        out.append(SearchResult(visits, policy, None, depth))
    return out


def search_many(
    roots: Sequence[GameState],
    evaluator: Evaluator,
    mcts_cfg: MCTSConfig,
    *,
    noise: bool,
    previous: Sequence[object | None] | None = None,
    last_actions: Sequence[int] | None = None,
) -> list[tuple[dict[int, int], object, float]]:
    """One search per root in lockstep (the patched ``trimcts`` ``run_mcts_many_cpp``): every
    network call, ``evaluator.evaluate_arrays``, takes the pending leaves of all the trees.
    Per root: ``(visits over legal root actions, tree handle, mean depth)``; ``previous[i]`` and
    ``last_actions[i]`` reuse the subtree of that action in that earlier tree.

    Each tree's search is the one ``search`` would run on its root alone, given an evaluator
    whose output for a state does not depend on the other states of the call.
    """
    count = len(roots)
    results: list[tuple[dict[int, int], object, float]] = engine.run_mcts_many_cpp(
        list(roots),
        evaluator,
        search_configuration(mcts_cfg, noise),
        list(previous) if previous is not None else [None] * count,
        list(last_actions) if last_actions is not None else [-1] * count,
    )
    for root, (visits, _, _) in zip(roots, results, strict=True):
        if not root.is_over() and sum(visits.values()) == 0:
            raise RuntimeError(
                f"MCTS returned no visits for a non-terminal state (step {root.current_step})"
            )
    return results


def search_gumbel_many(
    roots: Sequence[GameState],
    evaluator: Evaluator,
    mcts_cfg: MCTSConfig,
    gumbel: np.ndarray,
) -> list[SearchResult]:
    """One Gumbel search per root in lockstep (the patched ``trimcts`` ``run_gumbel_many_cpp``,
    whose source comment explains the algorithm), one ``evaluate_arrays`` call for the pending
    leaves of all the trees. ``gumbel`` float32 ``[R, A]``: the root noise g(a) of each root by
    action id (zeros: a deterministic search). No tree reuse, no Dirichlet noise.
    """
    raw = engine.run_gumbel_many_cpp(
        list(roots),
        evaluator,
        search_configuration(mcts_cfg, noise=False),
        np.ascontiguousarray(gumbel, dtype=np.float32),
        mcts_cfg.considered_actions,
        mcts_cfg.c_visit,
        mcts_cfg.c_scale,
    )
    results = []
    for root, (visits, policy, action, depth) in zip(roots, raw, strict=True):
        if not root.is_over() and action < 0:
            raise RuntimeError(
                f"Gumbel search chose no move for a non-terminal state (step {root.current_step})"
            )
        results.append(SearchResult(visits, policy, None if action < 0 else int(action), depth))
    return results


def search_configuration(mcts_cfg: MCTSConfig, noise: bool) -> SearchConfiguration:
    """The ``trimcts`` configuration of ``mcts_cfg``; root Dirichlet noise only when ``noise``."""
    return SearchConfiguration(
        max_simulations=mcts_cfg.simulations,
        max_depth=mcts_cfg.max_depth,
        cpuct=mcts_cfg.cpuct,
        dirichlet_alpha=mcts_cfg.dirichlet_alpha,
        dirichlet_epsilon=mcts_cfg.dirichlet_epsilon if noise else 0.0,
        discount=1.0,
        mcts_batch_size=mcts_cfg.mcts_batch_size,
    )


def search(
    root: GameState,
    evaluator: Evaluator,
    mcts_cfg: MCTSConfig,
    *,
    noise: bool,
    previous: object | None = None,
    last_action: int = -1,
) -> tuple[dict[int, int], object | None, float]:
    """One ``run_mcts`` call: ``(visits over legal root actions, tree handle, mean depth)``.

    The tree is built from copies of ``root``, random refills included: give it a
    ``fair_root`` (``GameSearch`` does), not the real game. ``previous`` and ``last_action``
    reuse the subtree of ``last_action`` in the tree ``previous`` as the root.

    Raises ``RuntimeError`` when the search returns nothing for a non-terminal state
    (``trimcts`` reports C++ errors only by returning empty visits).
    """
    visits, handle, depth = run_mcts(
        root,
        evaluator,
        search_configuration(mcts_cfg, noise),
        previous,
        last_action if previous is not None else -1,
    )
    if not visits or sum(visits.values()) == 0:
        raise RuntimeError(
            f"MCTS returned no visits for a non-terminal state (step {root.current_step}, "
            f"{len(root.valid_actions())} legal moves); trimcts hides C++ errors this way - "
            "see its log output above, and check the evaluator returns (policy, value) pairs"
        )
    return visits, handle, depth


def visit_distribution(visits: dict[int, int], action_dim: int) -> np.ndarray:
    """Normalised visit counts as float32 ``[A]``."""
    counts = np.zeros(action_dim, dtype=np.float64)
    counts[np.fromiter(visits.keys(), dtype=np.int64)] = np.fromiter(
        visits.values(), dtype=np.float64
    )
    dist: np.ndarray = (counts / counts.sum()).astype(np.float32)
    return dist


def choose_action(policy: np.ndarray, temperature: float | None, rng: np.random.Generator) -> int:
    """Argmax of ``policy [A]`` (ties to the lowest id) when ``temperature`` is None, else a
    sample from ``policy ** (1 / temperature)``."""
    if temperature is None:
        return int(np.argmax(policy))
    weights = policy.astype(np.float64) ** (1.0 / temperature)
    return int(rng.choice(policy.shape[0], p=weights / weights.sum()))
