"""Many games at once: the lockstep search (``puct_many``, the multi-game patch of trimcts),
self-play of K games (``SelfPlayGames``) and evaluation of many seeds together."""

from collections.abc import Sequence

import numpy as np
import pytest
from trianglengin import GameState

from alphatriangle.core.config import MCTSConfig
from alphatriangle.core.players import (
    MCTSPlayer,
    Player,
    RandomPlayer,
    play_game,
    play_games,
    uniform_mcts_player,
)
from alphatriangle.core.search import (
    NetworkEvaluator,
    PriorsValues,
    SearchSettings,
    UniformEvaluator,
    puct_many,
    tree_searcher,
)
from alphatriangle.core.selfplay import SelfPlayGames, play_episode, play_episodes
from tests.helpers import MobilityEvaluator, net, positions

SEARCH = MCTSConfig(variant="puct", simulations=48, mcts_batch_size=8)
SETTINGS = SearchSettings.of(SEARCH, noise=False)


class CountingEvaluator(MobilityEvaluator):
    """Records the size of every ``evaluate_arrays`` call."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def evaluate_arrays(self, states: Sequence[GameState]) -> PriorsValues:
        self.calls.append(len(states))
        return super().evaluate_arrays(states)


@pytest.mark.parametrize("evaluator", [MobilityEvaluator(), NetworkEvaluator(net())])
def test_lockstep_searches_equal_separate_ones_visit_for_visit(evaluator: object) -> None:
    roots = positions(6)
    alone = [puct_many([root], evaluator, SETTINGS)[0] for root in roots]  # type: ignore[arg-type]
    together = puct_many(roots, evaluator, SETTINGS)  # type: ignore[arg-type]
    for (visits, _, depth), (visits_k, _, depth_k) in zip(alone, together, strict=True):
        assert visits_k == visits
        assert depth_k == depth
    # And again from each reused subtree (the most visited move's).
    actions = [max(v, key=v.__getitem__) for v, _, _ in alone]
    nexts = []
    for root, action in zip(roots, actions, strict=True):
        child = root.copy()
        child.step(action)
        nexts.append(child)
    again = [
        puct_many([n], evaluator, SETTINGS, None, [(h, a)])[0]  # type: ignore[arg-type]
        for n, (_, h, _), a in zip(nexts, alone, actions, strict=True)
    ]
    again_k = puct_many(
        nexts,
        evaluator,  # type: ignore[arg-type]
        SETTINGS,
        None,
        [(h, a) for (_, h, _), a in zip(together, actions, strict=True)],
    )
    for (visits, _, _), (visits_k, _, _) in zip(again, again_k, strict=True):
        assert sum(visits.values()) > SEARCH.simulations  # the subtree was reused
        assert visits_k == visits


def test_one_call_evaluates_the_leaves_of_all_trees() -> None:
    evaluator = CountingEvaluator()
    puct_many(positions(5), evaluator, SETTINGS)
    # 5 roots at once, then rounds of up to 5 trees x 8 leaves; 48 simulations each.
    assert evaluator.calls[0] == 5
    assert max(evaluator.calls) == 5 * SEARCH.mcts_batch_size
    assert sum(evaluator.calls) <= 5 * (SEARCH.simulations + 1)
    # Five separate searches would make at least 5 x (1 + 48 / 8) = 35 calls.
    assert len(evaluator.calls) <= 1 + 2 * SEARCH.simulations // SEARCH.mcts_batch_size


def test_terminal_roots_get_no_search_and_the_others_are_unaffected() -> None:
    over = GameState(initial_seed=0)
    while not over.is_over():
        over.step(min(over.valid_actions()))
    [root] = positions(1)
    results = puct_many([over, root], MobilityEvaluator(), SETTINGS)
    assert results[0][0] == {}
    assert results[1][0] == puct_many([root], MobilityEvaluator(), SETTINGS)[0][0]


class _WrongShape(UniformEvaluator):
    def evaluate_arrays(self, states: Sequence[GameState]) -> PriorsValues:
        return np.zeros((len(states), 360), np.float32), np.zeros(len(states) + 1, np.float32)


class _Failing(UniformEvaluator):
    def evaluate_arrays(self, states: Sequence[GameState]) -> PriorsValues:
        raise KeyError("boom")


def test_evaluator_errors_reach_the_caller() -> None:
    with pytest.raises(
        RuntimeError, match=r"wrong shape: expected priors \[1, A\] and values \[1\]"
    ):
        puct_many(positions(1), _WrongShape(), SETTINGS)
    with pytest.raises(KeyError, match="boom"):
        puct_many(positions(2), _Failing(), SETTINGS)
    with pytest.raises(ValueError, match=r"noise must be None or a float32 array \[roots, A\]"):
        puct_many(positions(2), MobilityEvaluator(), SETTINGS, np.zeros((1, 360), np.float32))


def _same(a: object, b: object) -> None:
    for name in ("grid", "other", "policy", "valid_mask", "scores", "rewards"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("score", "length", "triangles_cleared", "simulations", "search_depth", "seed"):
        assert getattr(a, name) == getattr(b, name), name


def test_k_games_at_once_play_each_game_as_it_would_be_played_alone() -> None:
    cfg = SEARCH.model_copy(update={"simulations": 16, "temperature_moves": 4})
    seeds = list(range(30, 37))
    alone = {s: play_episode(MobilityEvaluator(), cfg, s, noise=False) for s in seeds}
    evaluator = CountingEvaluator()
    together = play_episodes(evaluator, cfg, seeds, 3, noise=False)
    assert sorted(r.seed for r in together) == seeds
    for record in together:
        _same(record, alone[record.seed])
        # A complete, consistent episode.
        assert record.length == len(record.policy) == len(record.grid) > 0
        assert record.scores[0] == 0
        assert record.rewards.sum() == pytest.approx(record.score, abs=1e-4)
        np.testing.assert_allclose(record.policy.sum(axis=1), 1.0, atol=1e-6)
        assert not (record.policy[~record.valid_mask]).any()
    assert max(evaluator.calls) == 3 * cfg.mcts_batch_size  # three games share the calls


def test_slots_refill_as_games_end_and_empty_when_the_seeds_run_out() -> None:
    cfg = SEARCH.model_copy(update={"simulations": 8})
    searcher = tree_searcher(MobilityEvaluator(), SearchSettings.of(cfg, noise=False))
    games = SelfPlayGames(searcher, iter(range(5)), 2)
    assert games.running == 2
    ended = []
    while games.running:
        ended += games.step()
        assert games.running <= 2
    assert sorted(r.seed for r in ended) == [0, 1, 2, 3, 4]
    assert games.step() == []
    with pytest.raises(ValueError, match="games must be at least 1"):
        SelfPlayGames(searcher, [1], 0)


@pytest.mark.parametrize(
    "player",
    [
        uniform_mcts_player(24),
        MCTSPlayer(NetworkEvaluator(net()), MCTSConfig(variant="puct", simulations=16)),
    ],
)
def test_evaluation_of_many_seeds_together_equals_sequential_games(player: MCTSPlayer) -> None:
    seeds = [1000, 1001, 1002, 1001, 1003]
    together = play_games(player, seeds)
    assert [r.seed for r in together] == seeds
    assert [(r.score, r.length) for r in together] == [play_game(player, s) for s in seeds]


@pytest.mark.parametrize("player", [uniform_mcts_player(8), RandomPlayer()], ids=["mcts", "random"])
def test_play_games_calls_between_moves_before_every_move_and_stops_when_it_raises(
    player: Player,
) -> None:
    seeds = [1000, 1001, 1002]
    calls: list[int] = []
    results = play_games(player, seeds, between_moves=lambda: calls.append(1))
    lengths = [r.length for r in results]
    # Together: one call per lockstep round, as many rounds as the longest game has moves.
    expected = max(lengths) if isinstance(player, MCTSPlayer) else sum(lengths)
    assert len(calls) == expected

    class StopError(Exception):
        pass

    def stop_at_third() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise StopError

    calls.clear()
    with pytest.raises(StopError):
        play_games(player, seeds, between_moves=stop_at_third)
    assert len(calls) == 3
