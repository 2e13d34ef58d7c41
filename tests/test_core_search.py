"""Network, evaluator, self-play and baseline players on the real engine and search."""

import numpy as np
import pytest
import torch
from trianglengin import GameState, Shape

from alphatriangle.core.config import MCTSConfig, ModelConfig
from alphatriangle.core.features import extract_batch, extract_features, feature_spec
from alphatriangle.core.network import AlphaTriangleNet
from alphatriangle.core.players import (
    GreedyPlayer,
    MCTSPlayer,
    RandomPlayer,
    network_player,
    play_game,
    play_games,
    uniform_mcts_player,
)
from alphatriangle.core.search import NetworkEvaluator, PolicyValue, UniformEvaluator, search
from alphatriangle.core.selfplay import play_episode

SMALL_SEARCH = MCTSConfig(variant="puct", simulations=8, mcts_batch_size=4, temperature_moves=3)


def net(seed: int = 0) -> AlphaTriangleNet:
    torch.manual_seed(seed)
    return AlphaTriangleNet(ModelConfig())


def test_network_shapes_and_presets() -> None:
    states = [GameState(initial_seed=s) for s in range(3)]
    grid, other = extract_batch(states)
    for cfg in (ModelConfig(), ModelConfig(channels=8, num_blocks=2, policy_hidden=4)):
        logits, value = AlphaTriangleNet(cfg)(torch.from_numpy(grid), torch.from_numpy(other))
        assert logits.shape == (3, 360)
        assert value.shape == (3,)
    big = AlphaTriangleNet(ModelConfig.preset("large"))
    small = AlphaTriangleNet()
    assert sum(p.numel() for p in big.parameters()) > 20 * sum(
        p.numel() for p in small.parameters()
    )


def test_evaluator_policy_covers_exactly_the_legal_moves() -> None:
    evaluator = NetworkEvaluator(net())
    states = [GameState(initial_seed=s) for s in range(4)]
    states[1].step(min(states[1].valid_actions()))
    results = evaluator.evaluate_batch(states)
    for state, (policy, value) in zip(states, results, strict=True):
        assert set(policy) == state.valid_actions()
        assert sum(policy.values()) == pytest.approx(1.0, abs=1e-5)
        assert all(p > 0 for p in policy.values())
        assert value >= state.game_score()
    single_policy, single_value = evaluator.evaluate_state(states[1])
    assert single_value == pytest.approx(results[1][1], abs=1e-5)
    for action, p in single_policy.items():
        assert p == pytest.approx(results[1][0][action], abs=1e-6)
    assert evaluator.evaluations == 5


def test_evaluator_value_is_banked_score_plus_clipped_gain() -> None:
    model = net()
    head = model.value[-1]
    assert isinstance(head, torch.nn.Linear)
    state = GameState(initial_seed=0)
    state.step(min(state.valid_actions()))
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(0.5)  # predicted gain 0.5 * value_scale (10) = 5
    evaluator = NetworkEvaluator(model)
    assert evaluator.evaluate_state(state)[1] == pytest.approx(state.game_score() + 5.0, abs=1e-5)
    with torch.no_grad():
        head.bias.fill_(-3.0)  # a negative gain is clipped: value is the banked score
    assert evaluator.evaluate_state(state)[1] == pytest.approx(state.game_score(), abs=1e-6)
    evaluator.load_weights(net(seed=1).state_dict())
    assert not torch.equal(evaluator.model.value[-1].bias, torch.tensor([-3.0]))


def test_episode_record_is_consistent() -> None:
    evaluator = NetworkEvaluator(net())
    rec = play_episode(evaluator, SMALL_SEARCH, seed=5)
    t = rec.length
    spec = feature_spec()
    assert t > 0
    assert rec.grid.shape == (t, *spec.grid_shape)
    assert rec.other.shape == (t, 45)
    assert rec.policy.shape == rec.valid_mask.shape == (t, 360)
    np.testing.assert_allclose(rec.policy.sum(axis=1), 1.0, atol=1e-6)
    assert not (rec.policy[~rec.valid_mask] > 0).any()
    assert rec.scores.shape == (t + 1,)
    assert rec.rewards.shape == (t,)
    assert rec.scores[0] == 0.0
    assert rec.scores[-1] == np.float32(rec.score)
    np.testing.assert_allclose(np.diff(rec.scores), rec.rewards, atol=1e-5)
    assert rec.simulations == 8 * t
    assert rec.search_depth >= 1.0
    assert rec.weight_version == -1
    first_grid, first_other = extract_features(GameState(initial_seed=5))
    np.testing.assert_array_equal(rec.grid[0], first_grid)
    np.testing.assert_array_equal(rec.other[0], first_other)
    assert rec.valid_mask.any(axis=1).all()


def test_a_noiseless_argmax_episode_replays_on_the_engine() -> None:
    rec = play_episode(
        NetworkEvaluator(net()), SMALL_SEARCH, seed=5, noise=False, temperature_moves=0
    )
    state = GameState(initial_seed=5)
    for t in range(rec.length):
        assert rec.valid_mask[t, int(np.argmax(rec.policy[t]))]
        state.step(int(np.argmax(rec.policy[t])))  # the most visited move, ties to the lowest
        assert state.game_score() == pytest.approx(float(rec.scores[t + 1]), abs=1e-5)
    assert state.is_over()


def test_noiseless_self_play_is_reproducible() -> None:
    evaluator = UniformEvaluator()
    a = play_episode(evaluator, SMALL_SEARCH, seed=11, noise=False)
    b = play_episode(evaluator, SMALL_SEARCH, seed=11, noise=False)
    assert a.score == b.score
    assert a.length == b.length
    np.testing.assert_array_equal(a.policy, b.policy)
    reuse_off = SMALL_SEARCH.model_copy(update={"tree_reuse": False})
    c = play_episode(evaluator, reuse_off, seed=11, noise=False, temperature_moves=0)
    d = play_episode(evaluator, reuse_off, seed=11, noise=False, temperature_moves=0)
    np.testing.assert_array_equal(c.policy, d.policy)
    assert (c.score, c.length) == (d.score, d.length)


class _BrokenEvaluator:
    """Returns a malformed result: trimcts swallows the error and returns no visits."""

    def evaluate_state(self, state: GameState) -> PolicyValue:
        raise RuntimeError("boom")

    def evaluate_batch(self, states: list[GameState]) -> list[PolicyValue]:
        raise RuntimeError("boom")


def test_empty_search_result_raises() -> None:
    with pytest.raises(RuntimeError, match="MCTS returned no visits"):
        search(GameState(initial_seed=0), _BrokenEvaluator(), SMALL_SEARCH, noise=False)


def completing_state() -> GameState:
    """Row 0 full except (0, 11); slot 0 holds a single up triangle that fits there."""
    state = GameState(initial_seed=0)
    for col in range(3, 11):
        state.debug_toggle_cell(0, col)
    state.debug_set_shapes([Shape([(0, 0, True)], (255, 0, 0), 0), None, None])
    return state


def test_greedy_takes_the_line_clear_and_search_finds_it() -> None:
    state = completing_state()
    assert GreedyPlayer().choose(state) == 11
    player = uniform_mcts_player(simulations=64)
    player.reset(0)
    assert player.choose(state) == 11


def test_players_are_deterministic_per_seed() -> None:
    assert play_game(RandomPlayer(), 4) == play_game(RandomPlayer(), 4)
    results = play_games(GreedyPlayer(), [1, 2])
    assert [r.seed for r in results] == [1, 2]
    assert all(r.length > 0 for r in results)
    searcher = MCTSPlayer(UniformEvaluator(), SMALL_SEARCH)
    assert play_game(searcher, 3) == play_game(searcher, 3)
    trained = network_player(net(), SMALL_SEARCH)
    score, length = play_game(trained, 3)
    assert (score, length) == play_game(trained, 3)
    assert length > 0
