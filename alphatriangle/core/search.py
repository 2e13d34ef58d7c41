"""The search seam: one settings object, a searcher per variant, the leaf evaluators.

- ``SearchSettings`` holds every setting of a search, frozen, built once from ``[mcts]`` (and
  ``[muzero]``) when a searcher is built; the searcher holds it and the C++ search reads it.
- ``Searcher`` is what self-play and the players drive: an object per game, the next search of
  many games in lockstep, and the move each game played (which returns the game's new object).
- ``tree_searcher`` builds AlphaZero's search on the real game, deciding the variant once:
  ``PuctSearcher`` (the patched ``trimcts`` ``run_mcts_many_cpp``: PUCT, tree reuse, Dirichlet
  noise) or ``GumbelSearcher`` (``run_gumbel_many_cpp``: Gumbel-top-k and sequential halving,
  whose rules ``core.gumbel_rules`` defines). MuZero's searcher is ``core.muzero.search``'s.
- Every search starts from a ``fair_root``, which does not know the real game's future hands;
  every random draw of a search (the root's seed, its noise) comes from the game's generator.
  Where the game deals inside the tree, a chance node averages over ``chance_outcomes`` deals
  drawn from seeds (``chance_seed``) that all root actions share.
- ``UniformEvaluator`` and ``NetworkEvaluator`` value leaves as dense arrays
  (``evaluate_arrays``), one call for the pending leaves of all the trees.
- ``visit_distribution`` and ``choose_action`` turn PUCT's visit counts into a policy and a move.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

import numpy as np
import torch
import trimcts.trimcts_cpp as engine
from trianglengin import GameState

from alphatriangle.core.config import MCTSConfig, MuZeroConfig
from alphatriangle.core.features import extract_batch, valid_mask_from_grid
from alphatriangle.core.network import AlphaTriangleNet

PriorsValues = tuple[np.ndarray, np.ndarray]
"""Priors float32 ``[B, A]`` by action id (zero off the legal actions) and values float32 ``[B]``."""


@dataclass(frozen=True)
class SearchSettings:
    """Every setting of one searcher, fixed when it is built (``SearchSettings.of``).

    The fields of ``MCTSConfig`` (whose field documentation says what each does), whether the
    root gets noise, and the latent search's settings from ``[muzero]``. The C++ searches read
    theirs from this object: ``simulations``, ``max_depth``, ``mcts_batch_size``, ``cpuct``,
    ``dirichlet_epsilon``, ``chance_outcomes``, and Gumbel's ``considered_actions``,
    ``c_visit``, ``c_scale``.
    """

    variant: Literal["puct", "gumbel"]
    simulations: int
    cpuct: float
    dirichlet_alpha: float
    dirichlet_epsilon: float
    mcts_batch_size: int
    max_depth: int
    temperature: float
    temperature_moves: int
    tree_reuse: bool
    considered_actions: int
    c_visit: float
    c_scale: float
    chance_outcomes: int
    noise: bool
    """Root noise, for self-play: PUCT's Dirichlet noise, Gumbel's g(a). Off: a player."""
    discount: float
    """The latent search's discount of backed-up returns (``[muzero] discount``)."""
    pb_c_init: float
    """c1 of the latent search's PUCT rule (``[muzero] pb_c_init``)."""
    pb_c_base: float
    """c2 of the latent search's PUCT rule (``[muzero] pb_c_base``)."""
    q_range_floor: float
    """The smallest Q range the latent search rescales by (``[muzero] q_range_floor``)."""
    stochastic: bool
    """Chance nodes in the latent search (``[muzero] stochastic``)."""

    @classmethod
    def of(
        cls, mcts: MCTSConfig, *, noise: bool, muzero: MuZeroConfig | None = None
    ) -> SearchSettings:
        """``mcts``' settings, ``noise``, and the latent search's from ``muzero`` (its defaults
        when None). Every ``MCTSConfig`` field but the schedule of self-play's simulations
        (``SCHEDULE_FIELDS``, which picks ``simulations`` per searcher) is carried: a new one
        must be added here."""
        latent = muzero or MuZeroConfig()
        return cls(
            **mcts.model_dump(exclude=set(MCTSConfig.SCHEDULE_FIELDS)),
            noise=noise,
            discount=latent.discount,
            pb_c_init=latent.pb_c_init,
            pb_c_base=latent.pb_c_base,
            q_range_floor=latent.q_range_floor,
            stochastic=latent.stochastic,
        )


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
        tree: the ``trimcts`` tree of a PUCT search, whose subtree of the played move the next
            search may start from; None for the other searches.
    """

    visits: dict[int, int]
    policy: np.ndarray
    action: int | None
    depth: float
    root_value: float | None = None
    tree: object | None = None


class Evaluator(Protocol):
    """What the C++ searches call to evaluate a batch of leaves (the pending leaves of all the
    trees of a lockstep)."""

    def evaluate_arrays(self, states: Sequence[GameState]) -> PriorsValues: ...


def action_dim(state: GameState) -> int:
    """Number of action ids of ``state``'s game (360 with the default ``EnvConfig``)."""
    cfg = state.env_config
    return int(cfg.NUM_SHAPE_SLOTS * cfg.ROWS * cfg.COLS)


def legal_mask(state: GameState) -> np.ndarray:
    """bool ``[A]``: the legal actions of ``state``."""
    mask = np.zeros(action_dim(state), dtype=bool)
    mask[list(state.valid_actions())] = True
    return mask


class UniformEvaluator:
    """Uniform prior over the legal moves; value = the score already banked (``value``).

    The value is on the scale of ``trimcts``' terminal outcome (the final game score), so a
    search with this evaluator does not prefer ending the game over continuing it.
    """

    def evaluate_arrays(self, states: Sequence[GameState]) -> PriorsValues:
        priors = np.zeros((len(states), action_dim(states[0])), dtype=np.float32)
        for row, state in zip(priors, states, strict=True):
            actions = list(state.valid_actions())
            if actions:
                row[actions] = 1.0 / len(actions)
        values = np.fromiter((self.value(s) for s in states), dtype=np.float64, count=len(states))
        return priors, values.astype(np.float32)

    def value(self, state: GameState) -> float:
        """A leaf's value, on the final-score scale."""
        return state.game_score()


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

    def evaluate_arrays(self, states: Sequence[GameState]) -> PriorsValues:
        """One forward pass over the ``B`` states: priors float32 ``[B, A]`` (zero off the legal
        actions) and values float32 ``[B]`` (banked score + clipped predicted gain)."""
        grid, other = extract_batch(states)
        mask = valid_mask_from_grid(grid)  # [B, A]
        with torch.inference_mode():
            logits, value = self.model(
                torch.from_numpy(grid).to(self.device), torch.from_numpy(other).to(self.device)
            )
            mask_t = torch.from_numpy(mask).to(self.device)
            logits = logits.masked_fill(~mask_t, -torch.inf)
            # A terminal state has no legal action; keep its row finite (the search reads none).
            logits = logits.masked_fill(~mask_t.any(dim=1, keepdim=True), 0.0)
            probs = torch.softmax(logits, dim=1).cpu().numpy()
            gain = (value.clamp(min=0.0) * self.value_scale).cpu().numpy()
        self.evaluations += len(states)
        banked = np.fromiter((s.game_score() for s in states), dtype=np.float64, count=len(states))
        return probs, (banked + gain.astype(np.float64)).astype(np.float32)


def fair_root(state: GameState, seed: int) -> GameState:
    """A search root with ``state``'s board, hand, score and step, whose future hands come
    from ``seed`` instead of the real game's generator (which ``copy()`` would carry along)."""
    root = state.copy()
    root.reseed(seed)
    return root


def chance_seed(search_seed: int, deal: int, outcome: int) -> int:
    """The seed that the chance nodes of a search with ``search_seed`` reseed the game's
    generator with to draw outcome ``outcome`` of the ``deal``-th deal on a path from the root
    (0 for the first): splitmix64's finalizer of the seed, then of it mixed with ``deal``, then
    with ``outcome``, cut to 32 bits. It depends on these three only, so every root action is
    judged on the same deals (``trimcts_cpp.chance_seed`` is its C++ twin)."""

    def mix(z: int) -> int:
        z = (z + 0x9E3779B97F4A7C15) & _U64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _U64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _U64
        return z ^ (z >> 31)

    return mix(mix(mix(search_seed) ^ deal) ^ outcome) & 0xFFFFFFFF


_U64 = (1 << 64) - 1


def hand_size(state: GameState) -> int:
    """Pieces in the hand; a move from a hand of one is followed by a random refill."""
    return sum(shape is not None for shape in state.get_shapes())


def dirichlet_noise(rng: np.random.Generator, legal: np.ndarray, alpha: float) -> np.ndarray:
    """PUCT's root noise: float64 ``[A]``, one Dirichlet(alpha) sample over the legal actions
    (bool ``[A]``) in action-id order, zero elsewhere. The root's priors become
    ``(1 - dirichlet_epsilon) * prior + dirichlet_epsilon * noise``."""
    noise = np.zeros(legal.shape[0])
    noise[legal] = rng.dirichlet(np.full(int(legal.sum()), alpha))
    return noise


GameT = TypeVar("GameT")


class Searcher(Protocol[GameT]):
    """An algorithm's search as self-play and the players drive it: an object per game
    (``game``, from the game's generator), the next search of many games at once (``search``,
    on their real, non-terminal states), and the game's object after it played ``action``
    (``played``, given that move's search). ``settings`` are the search's, fixed."""

    settings: SearchSettings

    def game(self, rng: np.random.Generator) -> GameT: ...

    def search(self, games: Sequence[GameT], states: Sequence[GameState]) -> list[SearchResult]: ...

    def played(self, game: GameT, state: GameState, action: int, result: SearchResult) -> GameT: ...


@dataclass(frozen=True)
class GameSearch:
    """One game's side of AlphaZero's searches, none of which can know the pieces the game has
    not dealt yet.

    The hand is refilled at random once its last piece is played, and a state's ``copy()``
    carries the generator that deals the refills, so a tree grown from copies of the real game
    would deal itself exactly the hands the real game deals next. Each search starts from
    ``fair_root(state, seed)`` instead, with ``seed`` drawn from ``rng`` (the game's generator,
    so that runs stay reproducible), then draws the root's noise from ``rng`` too; two games
    that differ only in their generators get the same search. With ``chance_outcomes`` > 1 the
    tree's deals are chance nodes, whose ``chance_outcomes`` deals each come from
    ``chance_seed(seed, ...)``; with 1 the whole tree plans over the one future that ``seed``
    deals (a single determinization).

    ``subtree``: the previous search's tree and the move played, whose subtree the next PUCT
    search starts from (``PuctSearcher.played`` keeps it only while it matches the real game).
    """

    rng: np.random.Generator
    subtree: tuple[object, int] | None = None


class TreeSearcher(ABC):
    """AlphaZero's search on the real game (``trimcts``): a ``GameSearch`` per game, all the
    games' searches in one lockstep. ``peek=True`` searches from copies of the real game (the
    search before the fair-root rule), kept only to measure what knowing the future was worth
    (``bench/fair_play.py``)."""

    def __init__(
        self, evaluator: Evaluator, settings: SearchSettings, *, peek: bool = False
    ) -> None:
        self.evaluator = evaluator
        self.settings = settings
        self.peek = peek

    def game(self, rng: np.random.Generator) -> GameSearch:
        return GameSearch(rng)

    @abstractmethod
    def search(
        self, games: Sequence[GameSearch], states: Sequence[GameState]
    ) -> list[SearchResult]: ...

    def played(
        self, game: GameSearch, state: GameState, action: int, result: SearchResult
    ) -> GameSearch:
        return game

    def _roots(
        self, games: Sequence[GameSearch], states: Sequence[GameState]
    ) -> tuple[list[GameState], list[int] | None]:
        """The search roots of ``states`` and the seeds of their chance nodes (None: none,
        with ``chance_outcomes == 1`` or when peeking, which sees the real deals)."""
        if self.peek:
            return [state.copy() for state in states], None
        seeds = [int(game.rng.integers(2**32)) for game in games]
        roots = [fair_root(state, seed) for state, seed in zip(states, seeds, strict=True)]
        return roots, seeds if self.settings.chance_outcomes > 1 else None


class PuctSearcher(TreeSearcher):
    """PUCT search (``mcts.variant = "puct"``): visit-count policies, the caller's move;
    Dirichlet noise on the root's priors when ``settings.noise``; with ``tree_reuse`` the
    subtree of the played move becomes the next root while it still matches the real game (a
    move that plays the hand's last piece makes the real game deal a new hand, and the
    subtree's states hold a hand of the old determinization, so the next search grows a new
    tree)."""

    def search(
        self, games: Sequence[GameSearch], states: Sequence[GameState]
    ) -> list[SearchResult]:
        settings = self.settings
        roots, chance_seeds = self._roots(games, states)
        noise = [
            dirichlet_noise(game.rng, legal_mask(state), settings.dirichlet_alpha)
            for game, state in zip(games, states, strict=True)
            if settings.noise and settings.dirichlet_epsilon > 0
        ]
        raw = puct_many(
            roots,
            self.evaluator,
            settings,
            np.stack(noise).astype(np.float32) if noise else None,
            [game.subtree for game in games],
            chance_seeds,
        )
        actions = action_dim(states[0])
        return [
            SearchResult(visits, visit_distribution(visits, actions), None, depth, tree=tree)
            for visits, tree, depth in raw
        ]

    def played(
        self, game: GameSearch, state: GameState, action: int, result: SearchResult
    ) -> GameSearch:
        keep = self.settings.tree_reuse and (self.peek or hand_size(state) > 1)
        return GameSearch(game.rng, (result.tree, action) if keep else None)


class GumbelSearcher(TreeSearcher):
    """Gumbel search (``mcts.variant = "gumbel"``): the search chooses the move and its
    improved policy is the target; every search grows a new tree; with ``settings.noise`` the
    root's Gumbel noise g(a) is drawn from the game's generator (zeros otherwise: the search
    plays its greedy move)."""

    def search(
        self, games: Sequence[GameSearch], states: Sequence[GameState]
    ) -> list[SearchResult]:
        actions = action_dim(states[0])
        roots, chance_seeds = self._roots(games, states)
        gumbel = np.zeros((len(games), actions), dtype=np.float32)
        if self.settings.noise:
            for row, game in zip(gumbel, games, strict=True):
                row[:] = game.rng.gumbel(size=actions)
        return gumbel_many(roots, self.evaluator, self.settings, gumbel, chance_seeds)


def tree_searcher(
    evaluator: Evaluator, settings: SearchSettings, *, peek: bool = False
) -> TreeSearcher:
    """AlphaZero's search with ``evaluator``, of the variant ``settings.variant`` (decided
    here, once for the searcher)."""
    kind = {"puct": PuctSearcher, "gumbel": GumbelSearcher}[settings.variant]
    return kind(evaluator, settings, peek=peek)


def puct_many(
    roots: Sequence[GameState],
    evaluator: Evaluator,
    settings: SearchSettings,
    noise: np.ndarray | None = None,
    subtrees: Sequence[tuple[object, int] | None] | None = None,
    chance_seeds: Sequence[int] | None = None,
) -> list[tuple[dict[int, int], object, float]]:
    """One PUCT search per root in lockstep (the patched ``trimcts`` ``run_mcts_many_cpp``,
    whose source comment explains the algorithm): every network call,
    ``evaluator.evaluate_arrays``, takes the pending leaves of all the trees. ``noise``: None,
    or float32 ``[R, A]``, each root's ``dirichlet_noise``; ``subtrees[i]``: an earlier tree
    and the action whose subtree root i starts from; ``chance_seeds``: None (the tree deals
    from its root's generator), or root i's search seed for chance nodes with
    ``settings.chance_outcomes`` deals each (``chance_seed``). Per root: ``(visits over legal root
    actions, tree handle, mean depth)``, no visits for a terminal root; each is the search
    its root would get alone.

    The trees are built from copies of the roots, random refills included: give them
    ``fair_root`` s, not the real games.
    """
    previous = list(subtrees) if subtrees is not None else [None] * len(roots)
    results: list[tuple[dict[int, int], object, float]] = engine.run_mcts_many_cpp(
        list(roots),
        evaluator,
        settings,
        noise,
        [kept[0] if kept else None for kept in previous],
        [kept[1] if kept else -1 for kept in previous],
        None if chance_seeds is None else list(chance_seeds),
    )
    return results


def gumbel_many(
    roots: Sequence[GameState],
    evaluator: Evaluator,
    settings: SearchSettings,
    gumbel: np.ndarray,
    chance_seeds: Sequence[int] | None = None,
) -> list[SearchResult]:
    """One Gumbel search per root in lockstep (the patched ``trimcts`` ``run_gumbel_many_cpp``,
    whose source comment explains the algorithm), one ``evaluate_arrays`` call for the pending
    leaves of all the trees. ``gumbel`` float32 ``[R, A]``: the root noise g(a) of each root by
    action id (zeros: a deterministic search); ``chance_seeds`` as for ``puct_many``. No tree
    reuse, no Dirichlet noise. A terminal
    root gets no visits and no move.
    """
    raw = engine.run_gumbel_many_cpp(
        list(roots),
        evaluator,
        settings,
        np.ascontiguousarray(gumbel, dtype=np.float32),
        None if chance_seeds is None else list(chance_seeds),
    )
    return [
        SearchResult(visits, policy, None if action < 0 else int(action), depth)
        for visits, policy, action, depth in raw
    ]


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
