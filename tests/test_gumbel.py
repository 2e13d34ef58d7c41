"""Gumbel search (``mcts.variant = "gumbel"``, the Gumbel patch of trimcts): exact values on
hand-made game trees, the lockstep of many games, self-play and evaluation with it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from trianglengin import GameState

from alphatriangle.core import gumbel_rules
from alphatriangle.core.config import MCTSConfig
from alphatriangle.core.players import MCTSPlayer, play_game, play_games
from alphatriangle.core.search import PriorsValues, SearchSettings, gumbel_many, tree_searcher
from alphatriangle.core.selfplay import play_episode
from tests.helpers import MobilityEvaluator, positions

C_VISIT, C_SCALE = 50.0, 0.1


Tree = dict[tuple[int, ...], tuple[dict[int, float], float]]


class Toy:
    """A hand-made game tree with the methods trimcts calls on a game state. ``tree`` maps a
    path of actions to ``(prior by action, value)``: a path with priors has those legal actions,
    one without is terminal with final score ``value``; ``value`` is also what the evaluator
    says of a non-terminal path."""

    def __init__(
        self, tree: Tree, path: tuple[int, ...] = (), scored: list[tuple[int, ...]] | None = None
    ) -> None:
        self.tree, self.path = tree, path
        self.scored: list[tuple[int, ...]] = [] if scored is None else scored
        """Every terminal path whose final score the search read (one per visit), shared."""

    def copy(self) -> Toy:
        return Toy(self.tree, self.path, self.scored)

    def step(self, action: int) -> None:
        self.path = (*self.path, action)

    def valid_actions(self) -> list[int]:
        return sorted(self.tree[self.path][0])

    def is_over(self) -> bool:
        return not self.tree[self.path][0]

    def get_outcome(self) -> float:
        self.scored.append(self.path)
        return self.tree[self.path][1]


class ToyEvaluator:
    """The tree's priors and values, as dense arrays; records every state it evaluates."""

    def __init__(self, actions: int) -> None:
        self.actions = actions
        self.evaluated: list[tuple[int, ...]] = []

    def evaluate_arrays(self, states: list[Toy]) -> PriorsValues:
        priors = np.zeros((len(states), self.actions), np.float32)
        for row, state in zip(priors, states, strict=True):
            for action, prior in state.tree[state.path][0].items():
                row[action] = prior
            self.evaluated.append(state.path)
        values = np.array([s.tree[s.path][1] for s in states], np.float32)
        return priors, values


def gumbel_search(root: Toy, gumbel: list[float], **cfg: object) -> tuple:  # type: ignore[type-arg]
    settings = {"variant": "gumbel", "mcts_batch_size": 1, "c_visit": C_VISIT, "c_scale": C_SCALE}
    mcts = MCTSConfig.model_validate({**settings, **cfg})
    evaluator = ToyEvaluator(len(gumbel))
    [result] = gumbel_many(
        [root],  # type: ignore[list-item]
        evaluator,  # type: ignore[arg-type]
        SearchSettings.of(mcts, noise=False),
        np.array([gumbel], np.float32),
    )
    return result, evaluator


# A root with 6 legal actions. Child a has one action, to a terminal state whose final score is
# V[a], and the network values the child at V[a] too: every simulation through a backs up V[a],
# so q(a) = V[a] exactly.
PRIOR = [0.3, 0.1, 0.2, 0.15, 0.15, 0.1]
V = [1.0, 5.0, 3.0, 4.0, 2.0, 0.5]
ROOT_VALUE = 2.5
G = [0.1, 0.5, -0.2, 0.3, 1.5, -1.0]


def one_step_tree(prior: list[float], values: list[float]) -> Tree:
    tree: Tree = {(): (dict(enumerate(prior)), ROOT_VALUE)}
    for a, v in enumerate(values):
        tree[(a,)] = ({0: 1.0}, v)
        tree[(a, 0)] = ({}, v)
    return tree


def test_sequential_halving_choice_and_improved_policy_by_hand() -> None:
    result, _ = gumbel_search(Toy(one_step_tree(PRIOR, V)), G, simulations=16, considered_actions=4)
    # g + logits = [-1.104, -1.803, -1.809, -1.597, -0.397, -3.303]: the top 4 are 4, 0, 3, 1.
    # n = 16, m = 4: ceil(log2 4) = 2 phases. Phase 1 gives each of the 4 max(1, 16 // (2 * 4))
    # = 2 visits (8 simulations). Then, with max N = 2, sigma = (50 + 2) * 0.1 * q_hat where
    # q_hat rescales q = [1, 5, _, 4, 2, _] to [0, 1]: score = g + logits + sigma =
    # 4: -0.397 + 1.3, 0: -1.104 + 0, 3: -1.597 + 3.9, 1: -1.803 + 5.2; the best two, 1 and 3,
    # get max(1, 16 // (2 * 2)) = 4 more visits each.
    assert result.visits == {0: 2, 1: 6, 2: 0, 3: 6, 4: 2, 5: 0}
    # Among the most visited (1 and 3, N = 6, sigma scale 5.6): 1 scores -1.803 + 5.6 = 3.80,
    # 3 scores -1.597 + 0.75 * 5.6 = 2.60.
    assert result.action == 1

    # Improved policy softmax(logits + sigma(completed Q)). Unvisited 2 and 5 get the mixed
    # value (v + sum N * sum_visited prior * q / sum_visited prior) / (1 + sum N) with
    # sum_visited prior = 0.7 and sum_visited prior * q = 0.3 + 0.5 + 0.6 + 0.3 = 1.7.
    mixed = (ROOT_VALUE + 16 * 1.7 / 0.7) / 17
    assert mixed == pytest.approx(2.432773, abs=1e-6)
    completed = np.array([1.0, 5.0, mixed, 4.0, 2.0, mixed])
    sigma = (C_VISIT + 6) * C_SCALE * (completed - 1.0) / (5.0 - 1.0)
    logits = np.log(PRIOR) + sigma
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(result.policy, expected, rtol=1e-5)
    assert result.policy.dtype == np.float32
    # The mixed value read back from the policy: log(pi'(2) / prior(2)) - log(pi'(0) / prior(0))
    # = sigma(2) - sigma(0) = 5.6 * (completedQ(2) - 1) / 4.
    gap = math.log(result.policy[2] / PRIOR[2]) - math.log(result.policy[0] / PRIOR[0])
    assert 1.0 + gap * 4 / 5.6 == pytest.approx(mixed, abs=1e-4)


@pytest.mark.parametrize("seed", range(6))
def test_the_search_policy_and_move_are_the_reference_rules_of_its_visits(seed: int) -> None:
    # Random one-step trees: q(a) = V[a] exactly once visited, so the reference computes the
    # root's improved policy and move from the visits the C++ search reports.
    rng = np.random.default_rng(seed)
    legal = int(rng.integers(3, 12))
    prior = rng.dirichlet(np.ones(legal)).tolist()
    values = rng.uniform(0.0, 10.0, legal).round(2).tolist()
    g = rng.gumbel(size=legal).astype(np.float32).tolist()
    m, n = int(rng.integers(2, 9)), int(rng.integers(4, 40))
    result, _ = gumbel_search(
        Toy(one_step_tree(prior, values)), g, simulations=n, considered_actions=m
    )
    visits = np.array([result.visits[a] for a in range(legal)])
    assert visits.sum() == n
    # The search holds priors and values as float32.
    p, q = (np.array(x, np.float32).astype(np.float64) for x in (prior, values))
    logits = gumbel_rules.logits(p)
    completed = gumbel_rules.completed_q(ROOT_VALUE, p, q, visits)
    sigma = gumbel_rules.sigma(completed, visits, C_VISIT, C_SCALE)
    np.testing.assert_allclose(
        result.policy[:legal], gumbel_rules.improved_policy(logits, sigma), rtol=2e-6
    )
    assert result.action == gumbel_rules.root_action(visits, np.array(g), logits, sigma)


def test_without_noise_the_search_is_greedy_and_fewer_simulations_visit_the_top_k_once() -> None:
    # g = 0: the top 4 by prior alone are 0 (0.3), 2 (0.2), 3 and 4 (0.15 each). n = 4: one
    # visit each (4 // (2 * 4) = 0, at least 1), then the best by logits + sigma among them:
    # q = [1, _, 3, 4, 2, _] rescaled to [0, 2/3, 1, 1/3], sigma scale (50 + 1) * 0.1.
    result, _ = gumbel_search(
        Toy(one_step_tree(PRIOR, V)), [0.0] * 6, simulations=4, considered_actions=4
    )
    assert result.visits == {0: 1, 1: 0, 2: 1, 3: 1, 4: 1, 5: 0}
    # 0: -1.204 + 0; 2: -1.609 + 5.1 * 2/3 = 1.79; 3: -1.897 + 5.1 = 3.20; 4: -1.897 + 1.7.
    assert result.action == 3


@pytest.mark.parametrize(
    ("legal", "n", "m", "expected"),
    [
        # ceil(log2 8) = 3 phases: 32 // (3 * 8) = 1 visit to each of 8; 32 // (3 * 4) = 2 more
        # to each of the best 4; 32 // (3 * 2) = 5 more to each of the best 2, then 5 more
        # each until the 32 run out (3 each).
        (8, 32, 8, [11, 11, 3, 3, 1, 1, 1, 1]),
        (8, 8, 16, [1] * 8),  # m above the legal actions: all 8 considered, one visit each
        (3, 5, 1, [5, 0, 0]),  # one considered action takes every simulation
        (2, 7, 2, [4, 3]),  # one phase: 7 // (1 * 2) = 3 each, then halving keeps both
    ],
)
def test_the_visits_follow_the_sequential_halving_schedule(
    legal: int, n: int, m: int, expected: list[int]
) -> None:
    prior = [1.0 / legal] * legal
    values = [float(a) for a in range(legal)]
    result, _ = gumbel_search(
        Toy(one_step_tree(prior, values)), [0.0] * legal, simulations=n, considered_actions=m
    )
    assert sorted(result.visits.values(), reverse=True) == expected


def _interior_reference(
    prior: list[float], values: list[float], raw: float, sims: int, c_scale: float
) -> list[int]:
    """The visits the rule argmax [pi'(a) - N(a) / (1 + sum N)] gives below the root, for
    ``sims`` simulations into a node whose children are terminal with these final scores."""
    visits = [0] * len(prior)
    for _ in range(sims):
        seen = [a for a, n in enumerate(visits) if n]
        total = sum(visits)
        mixed = raw
        if seen:
            mean = sum(prior[a] * values[a] for a in seen) / sum(prior[a] for a in seen)
            mixed = (raw + total * mean) / (1 + total)
        completed = [values[a] if visits[a] else mixed for a in range(len(prior))]
        low, high = min(completed), max(completed)
        sigma = [
            (C_VISIT + max(visits)) * c_scale * (q - low) / max(high - low, 1e-8) for q in completed
        ]
        logits = [math.log(p) + s for p, s in zip(prior, sigma, strict=True)]
        top = max(logits)
        weights = [math.exp(x - top) for x in logits]
        improved = [w / sum(weights) for w in weights]
        scores = [improved[a] - visits[a] / (1 + total) for a in range(len(prior))]
        visits[scores.index(max(scores))] += 1
    return visits


@pytest.mark.parametrize("c_scale", [C_SCALE, 0.005])
def test_below_the_root_visits_track_the_improved_policy(c_scale: float) -> None:
    # The root has one action, so every simulation enters child (0,); the first evaluates it
    # (value 2), the next 11 descend by the deterministic rule to its terminal children.
    prior, values = [0.5, 0.3, 0.2], [1.0, 3.0, 2.0]
    tree: Tree = {(): ({0: 1.0}, 2.0), (0,): (dict(enumerate(prior)), 2.0)}
    tree |= {(0, a): ({}, v) for a, v in enumerate(values)}
    root = Toy(tree)
    result, evaluator = gumbel_search(root, [0.0] * 3, simulations=12, c_scale=c_scale)
    assert result.visits == {0: 12}
    assert evaluator.evaluated == [(), (0,)]  # terminal states are scored, never evaluated
    visits = [root.scored.count((0, a)) for a in range(3)]
    expected = _interior_reference(prior, values, 2.0, 11, c_scale)
    assert visits == expected
    if c_scale == C_SCALE:
        # By hand: all unvisited first (sigma = 0), so the highest prior, 0 (score 0.5 - 0);
        # then Q dominates: q(1) = 3 against the mixed value 1.5 of 1 and 2 after one visit.
        assert visits == [1, 10, 0]
    else:
        assert min(visits) > 0  # with a small c_scale the prior keeps every child visited


GUMBEL = MCTSConfig(variant="gumbel", simulations=16, considered_actions=8, mcts_batch_size=4)


def test_lockstep_gumbel_searches_equal_separate_ones() -> None:
    roots = positions(5)
    noise = np.random.default_rng(0).gumbel(size=(5, 360)).astype(np.float32)
    settings = SearchSettings.of(GUMBEL, noise=False)
    together = gumbel_many(roots, MobilityEvaluator(), settings, noise)
    for i, root in enumerate(roots):
        [alone] = gumbel_many([root], MobilityEvaluator(), settings, noise[i : i + 1])
        assert together[i].visits == alone.visits
        assert together[i].action == alone.action
        np.testing.assert_array_equal(together[i].policy, alone.policy)
        assert sum(alone.visits.values()) == GUMBEL.simulations
        assert alone.action in root.valid_actions()
        legal = np.zeros(360, bool)
        legal[sorted(root.valid_actions())] = True
        assert alone.policy.sum() == pytest.approx(1.0, abs=1e-5)
        assert not alone.policy[~legal].any()
        assert (alone.policy[legal] > 0).all()


def test_self_play_plays_the_search_choice_and_stores_the_improved_policy() -> None:
    first = play_episode(MobilityEvaluator(), GUMBEL, seed=11, noise=True)
    again = play_episode(MobilityEvaluator(), GUMBEL, seed=11, noise=True)
    # The Gumbel noise comes from the game's generator: the same seed plays the same game.
    np.testing.assert_array_equal(first.policy, again.policy)
    assert first.score == again.score
    # Replay it search by search: each move is the search's own choice (no temperature).
    state = GameState(initial_seed=11)
    searcher = tree_searcher(MobilityEvaluator(), SearchSettings.of(GUMBEL, noise=True))
    game = searcher.game(np.random.default_rng(11))
    for move in range(first.length):
        [result] = searcher.search([game], [state])
        np.testing.assert_array_equal(first.policy[move], result.policy)
        assert result.action is not None
        game = searcher.played(game, state, result.action, result)
        state.step(result.action)
    assert state.is_over()
    assert state.game_score() == first.score
    np.testing.assert_allclose(first.policy.sum(axis=1), 1.0, atol=1e-5)
    assert not first.policy[~first.valid_mask].any()


def test_evaluation_plays_gumbel_without_noise_batched_as_sequentially() -> None:
    player = MCTSPlayer(MobilityEvaluator(), GUMBEL)
    seeds = [1000, 1001, 1002]
    together = play_games(player, seeds)
    assert [(r.score, r.length) for r in together] == [play_game(player, s) for s in seeds]
    # Noiseless: the same seed gives the same game with a fresh player.
    assert play_game(MCTSPlayer(MobilityEvaluator(), GUMBEL), 1001) == play_game(player, 1001)


def test_gumbel_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="variant"):
        MCTSConfig.model_validate({"variant": "alphago"})
    with pytest.raises(ValueError, match="considered_actions"):
        MCTSConfig.model_validate({"considered_actions": 0})
    with pytest.raises(ValueError, match="c_scale"):
        MCTSConfig.model_validate({"c_scale": 0})
