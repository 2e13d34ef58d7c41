"""Chance nodes where the game deals (``mcts.chance_outcomes``, trimcts-1.3.0-chance.patch)."""

from collections.abc import Sequence

import numpy as np
import pytest
import trimcts.trimcts_cpp as engine
from trianglengin import GameState

from alphatriangle.core import gumbel_rules as rules
from alphatriangle.core.config import MCTSConfig
from alphatriangle.core.search import (
    PriorsValues,
    SearchSettings,
    UniformEvaluator,
    action_dim,
    chance_seed,
    fair_root,
    gumbel_many,
    hand_size,
    puct_many,
    tree_searcher,
)
from tests.helpers import MobilityEvaluator
from tests.test_fair_search import last_piece_state, twin_with_another_future

SEED = 7


def settings(outcomes: int, simulations: int, **update: object) -> SearchSettings:
    """A noiseless search's settings: Gumbel, one leaf per network call, unless ``update``."""
    fields = {"variant": "gumbel", "mcts_batch_size": 1, **update}
    cfg = MCTSConfig.model_validate(
        {"simulations": simulations, "chance_outcomes": outcomes, **fields}
    )
    return SearchSettings.of(cfg, noise=False)


def drawn(root: GameState, action: int, outcomes: int, deal: int = 0) -> list[GameState]:
    """The ``outcomes`` deals a chance node below ``root`` draws for ``action`` (by hand)."""
    states = []
    for k in range(outcomes):
        state = root.copy()
        state.reseed(chance_seed(SEED, deal, k))
        state.step(action)
        states.append(state)
    return states


def favour(root: GameState, *actions: int) -> np.ndarray:
    """Root noise g(a) that makes Gumbel-top-k consider ``actions`` first."""
    g = np.zeros((1, action_dim(root)), dtype=np.float32)
    g[0, list(actions)] = 10.0
    return g


def test_the_seed_rule_is_the_same_in_python_and_cpp() -> None:
    for triple in [(0, 0, 0), (SEED, 0, 1), (2**32 - 1, 3, 7), (123456789, 11, 0)]:
        assert engine.chance_seed(*triple) == chance_seed(*triple)
    # Every outcome, deal and search seed gets its own seed.
    seeds = {chance_seed(s, j, k) for s in range(3) for j in range(3) for k in range(3)}
    assert len(seeds) == 27


def test_a_chance_node_is_worth_the_mean_of_its_drawn_deals() -> None:
    """One considered action, one simulation per outcome: the action's Q is exactly the mean
    of the network's values of the K deals drawn for it, which the improved policy shows."""
    outcomes = 4
    root = fair_root(last_piece_state(), 1)
    legal = sorted(root.valid_actions())
    chosen = legal[len(legal) // 2]
    evaluator = MobilityEvaluator()
    [result] = gumbel_many(
        [root],
        evaluator,
        settings(outcomes, outcomes, considered_actions=1),
        favour(root, chosen),
        [SEED],
    )
    assert result.visits[chosen] == outcomes
    values = evaluator.evaluate_arrays(drawn(root, chosen, outcomes))[1]
    assert len(set(values.tolist())) > 1, "the deals must differ in value for the test to bite"
    prior = np.full(len(legal), 1.0 / len(legal))
    q = np.zeros(len(legal))
    evaluated = np.zeros(len(legal), dtype=np.int64)
    q[legal.index(chosen)] = values.astype(np.float64).mean()
    evaluated[legal.index(chosen)] = outcomes
    root_value = float(evaluator.evaluate_arrays([root])[1][0])
    sigma = rules.sigma(rules.completed_q(root_value, prior, q, evaluated), evaluated, 50.0, 0.1)
    expected = rules.improved_policy(rules.logits(prior), sigma)
    np.testing.assert_allclose(result.policy[legal], expected, rtol=1e-5)


class LuckyDeal(UniformEvaluator):
    """Worth 100 after ``lucky`` (its cells filled) while slot 0 holds the shape that one deal
    put there, 0 after it otherwise, and 40 on any other line. Priors leave slot 0 alone, so
    the lucky shape stays in hand below the move."""

    def __init__(self, root: GameState, lucky: int, shape: object) -> None:
        before = root.get_grid_data_np()["occupied"]
        after = root.copy()
        after.step(lucky)
        self.cells = after.get_grid_data_np()["occupied"] & ~before
        assert self.cells.any()
        self.shape = shape
        self.slot = root.env_config.ROWS * root.env_config.COLS

    def evaluate_arrays(self, states: Sequence[GameState]) -> PriorsValues:
        priors, values = super().evaluate_arrays(states)
        priors[:, : self.slot] = 0.0
        priors /= np.maximum(priors.sum(axis=1, keepdims=True), 1e-12)
        return priors, values

    def value(self, state: GameState) -> float:
        if (state.get_grid_data_np()["occupied"] & self.cells).sum() != self.cells.sum():
            return 40.0
        return 100.0 if state.get_shapes()[0] == self.shape else 0.0


def test_the_move_lucky_in_one_imagined_deal_loses_on_average_and_is_avoided() -> None:
    outcomes = 8
    root = fair_root(last_piece_state(), SEED)
    legal = sorted(root.valid_actions())
    lucky, steady = legal[0], legal[-1]
    one_deal = root.copy()
    one_deal.step(lucky)
    evaluator = LuckyDeal(root, lucky, one_deal.get_shapes()[0])
    # The imagined deal of the single-future search (the root's own generator) makes it win;
    # the deals a chance node draws make it lose on average.
    assert evaluator.value(one_deal) == 100.0
    average = np.mean([evaluator.value(s) for s in drawn(root, lucky, outcomes)])
    assert average < 40.0
    g = favour(root, lucky, steady)
    search = settings(outcomes, 2 * outcomes, considered_actions=2)
    [single] = gumbel_many([root], evaluator, settings(1, 2 * outcomes, considered_actions=2), g)
    [chance] = gumbel_many([root], evaluator, search, g, [SEED])
    assert single.visits[lucky] == chance.visits[lucky] == outcomes
    assert single.action == lucky
    assert chance.action == steady


def recorded_hands(outcomes: int, variant: str) -> tuple[GameState, list[object]]:
    """The hands the network saw one move below a last-piece root, with the root."""

    class Recording(MobilityEvaluator):
        def __init__(self) -> None:
            self.hands: list[object] = []

        def evaluate_arrays(self, states: Sequence[GameState]) -> PriorsValues:
            self.hands += [
                s.get_shapes() for s in states if s.current_step == root.current_step + 1
            ]
            return super().evaluate_arrays(states)

    root = fair_root(last_piece_state(), 1)
    evaluator = Recording()
    cfg = settings(outcomes, 64, variant=variant, mcts_batch_size=8)
    if variant == "puct":
        puct_many([root], evaluator, cfg, None, None, [SEED])
    else:
        gumbel_many([root], evaluator, cfg, np.zeros((1, action_dim(root)), np.float32), [SEED])
    return root, evaluator.hands


@pytest.mark.parametrize("variant", ["gumbel", "puct"])
def test_every_root_action_meets_the_same_deals(variant: str) -> None:
    """Common random numbers: the k-th deal below the root is the same hand whichever move
    led to it, and the K deals are exactly those the seed rule draws."""
    outcomes = 3
    root, hands = recorded_hands(outcomes, variant)
    expected = [s.get_shapes() for s in drawn(root, min(root.valid_actions()), outcomes)]
    assert len(hands) > 2 * outcomes  # several root actions reached their deals
    assert all(hand in expected for hand in hands)
    assert all(hand in hands for hand in expected)


@pytest.mark.parametrize("variant", ["gumbel", "puct"])
def test_one_seed_one_search_whatever_the_real_future(variant: str) -> None:
    real = last_piece_state()
    twin = twin_with_another_future(real)
    cfg = MCTSConfig(variant=variant, simulations=48, chance_outcomes=4)
    results = []
    for state in (real, real, twin):
        searcher = tree_searcher(MobilityEvaluator(), SearchSettings.of(cfg, noise=True))
        [result] = searcher.search([searcher.game(np.random.default_rng(5))], [state])
        results.append(result)
    for other in results[1:]:
        assert other.visits == results[0].visits
        np.testing.assert_array_equal(other.policy, results[0].policy)
        assert other.action == results[0].action


def test_the_chance_nodes_draw_from_the_search_seed_not_the_root_generator() -> None:
    """Two roots with different generators but one search seed grow the same tree."""
    state = last_piece_state()
    cfg = settings(4, 32, mcts_batch_size=4)
    g = np.zeros((1, action_dim(state)), np.float32)
    [a] = gumbel_many([fair_root(state, 1)], MobilityEvaluator(), cfg, g, [SEED])
    [b] = gumbel_many([fair_root(state, 2)], MobilityEvaluator(), cfg, g, [SEED])
    [c] = gumbel_many([fair_root(state, 1)], MobilityEvaluator(), cfg, g, [SEED + 1])
    assert a.visits == b.visits
    np.testing.assert_array_equal(a.policy, b.policy)
    assert not np.array_equal(a.policy, c.policy)


def test_one_outcome_is_the_single_imagined_deal() -> None:
    """chance_outcomes = 1 passes no seeds: the searcher's tree is the one of before."""
    state = last_piece_state()
    assert hand_size(state) == 1
    cfg = MCTSConfig(variant="gumbel", simulations=32, chance_outcomes=1)
    searcher = tree_searcher(MobilityEvaluator(), SearchSettings.of(cfg, noise=False))
    rng = np.random.default_rng(5)
    [result] = searcher.search([searcher.game(rng)], [state])
    seed = int(np.random.default_rng(5).integers(2**32))
    g = np.zeros((1, action_dim(state)), np.float32)
    [alone] = gumbel_many([fair_root(state, seed)], MobilityEvaluator(), searcher.settings, g)
    np.testing.assert_array_equal(result.policy, alone.policy)


def test_chance_outcomes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chance_outcomes"):
        MCTSConfig(chance_outcomes=0)


def test_a_chance_node_is_never_reused_as_a_root() -> None:
    """After the real game deals, the subtree of the played move (a chance node) is dropped
    even when the caller offers it: the next search is exactly a new tree's."""
    root = fair_root(last_piece_state(), 1)
    cfg = settings(4, 32, variant="puct", mcts_batch_size=8)
    [(visits, tree, _)] = puct_many([root], MobilityEvaluator(), cfg, None, None, [SEED])
    action = max(visits, key=visits.__getitem__)
    after = root.copy()
    after.step(action)
    following = fair_root(after, 2)
    [(offered, _, _)] = puct_many(
        [following], MobilityEvaluator(), cfg, None, [(tree, action)], [SEED]
    )
    [(fresh, _, _)] = puct_many([following], MobilityEvaluator(), cfg, None, None, [SEED])
    assert offered == fresh
    assert sum(fresh.values()) == 32


@pytest.mark.parametrize("variant", ["gumbel", "puct"])
def test_searches_with_chance_nodes_in_lockstep_are_the_searches_alone(variant: str) -> None:
    roots = [fair_root(last_piece_state(seed), seed) for seed in (1, 2, 3)]
    cfg = settings(4, 32, variant=variant, mcts_batch_size=4)
    seeds = [11, 12, 13]
    if variant == "puct":
        together = [v for v, _, _ in puct_many(roots, MobilityEvaluator(), cfg, None, None, seeds)]
        alone = [
            puct_many([r], MobilityEvaluator(), cfg, None, None, [s])[0][0]
            for r, s in zip(roots, seeds, strict=True)
        ]
    else:
        g = np.zeros((3, action_dim(roots[0])), np.float32)
        together = [r.visits for r in gumbel_many(roots, MobilityEvaluator(), cfg, g, seeds)]
        alone = [
            gumbel_many([r], MobilityEvaluator(), cfg, g[:1], [s])[0].visits
            for r, s in zip(roots, seeds, strict=True)
        ]
    assert together == alone
