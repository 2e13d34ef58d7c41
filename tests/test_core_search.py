"""Network, evaluator, self-play and baseline players on the real engine and search."""

import copy

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
from alphatriangle.core.search import (
    GameSearch,
    NetworkEvaluator,
    SearchSettings,
    UniformEvaluator,
    dirichlet_noise,
    fair_root,
    legal_mask,
    puct_many,
    tree_searcher,
)
from alphatriangle.core.selfplay import EpisodeRecord, play_episode
from tests.helpers import MobilityEvaluator, net

SMALL_SEARCH = MCTSConfig(variant="puct", simulations=8, mcts_batch_size=4, temperature_moves=3)


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
    priors, values = evaluator.evaluate_arrays(states)
    assert priors.shape == (4, 360)
    assert priors.dtype == values.dtype == np.float32
    for state, row, value in zip(states, priors, values, strict=True):
        assert set(np.flatnonzero(row)) == state.valid_actions()
        assert row.sum() == pytest.approx(1.0, abs=1e-5)
        assert value >= np.float32(state.game_score())
    single_priors, single_values = evaluator.evaluate_arrays(states[1:2])
    assert single_values[0] == pytest.approx(values[1], abs=1e-5)
    np.testing.assert_allclose(single_priors[0], priors[1], atol=1e-6)
    assert evaluator.evaluations == 5


def test_the_uniform_evaluator_spreads_the_prior_over_the_legal_moves() -> None:
    states = [GameState(initial_seed=s) for s in range(3)]
    priors, values = UniformEvaluator().evaluate_arrays(states)
    for state, row in zip(states, priors, strict=True):
        legal = sorted(state.valid_actions())
        np.testing.assert_array_equal(row[legal], np.float32(1.0 / len(legal)))
        assert row.sum() == pytest.approx(1.0, abs=1e-5)
        assert set(np.flatnonzero(row)) == set(legal)
    np.testing.assert_array_equal(values, [s.game_score() for s in states])
    _, mobility = MobilityEvaluator().evaluate_arrays(states)
    expected = [s.game_score() + 0.01 * len(s.valid_actions()) for s in states]
    np.testing.assert_array_equal(mobility, np.array(expected, np.float32))


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
    value = evaluator.evaluate_arrays([state])[1][0]
    assert value == pytest.approx(state.game_score() + 5.0, abs=1e-5)
    with torch.no_grad():
        head.bias.fill_(-3.0)  # a negative gain is clipped: value is the banked score
    assert evaluator.evaluate_arrays([state])[1][0] == pytest.approx(state.game_score(), abs=1e-6)
    evaluator.load_weights(net(seed=1).state_dict())
    assert evaluator.model is model  # on the CPU, moved in place
    assert not torch.equal(head.bias, torch.tensor([-3.0]))


def test_the_search_settings_carry_every_search_setting_and_the_noise() -> None:
    mcts = MCTSConfig(variant="puct", simulations=12, c_scale=0.2, temperature_moves=2)
    settings = SearchSettings.of(mcts, noise=True)
    for name, value in mcts.model_dump(exclude=set(MCTSConfig.SCHEDULE_FIELDS)).items():
        assert getattr(settings, name) == value, name
    # Self-play's schedule of simulations picks the count a searcher is built with.
    assert not any(hasattr(settings, name) for name in MCTSConfig.SCHEDULE_FIELDS)
    assert settings.noise
    assert (settings.discount, settings.pb_c_init, settings.pb_c_base) == (0.997, 1.25, 19_652.0)
    assert not SearchSettings.of(mcts, noise=False).noise
    with pytest.raises(AttributeError):
        settings.simulations = 3  # type: ignore[misc]
    # The variant is decided when the searcher is built.
    assert type(tree_searcher(UniformEvaluator(), settings)).__name__ == "PuctSearcher"
    gumbel = SearchSettings.of(mcts.model_copy(update={"variant": "gumbel"}), noise=False)
    assert type(tree_searcher(UniformEvaluator(), gumbel)).__name__ == "GumbelSearcher"


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


NOISY_PUCT = MCTSConfig(variant="puct", simulations=16, mcts_batch_size=4, temperature_moves=0)


def test_noisy_puct_self_play_is_reproducible_by_seed() -> None:
    # Argmax moves (no temperature): only the root's Dirichlet noise and the fair roots' seeds
    # are random, and both come from the game's generator.
    def play(seed: int) -> EpisodeRecord:
        return play_episode(MobilityEvaluator(), NOISY_PUCT, seed, noise=True)

    first, again, other = play(21), play(21), play(22)
    np.testing.assert_array_equal(first.policy, again.policy)
    np.testing.assert_array_equal(first.actions, again.actions)
    assert (first.score, first.length) == (again.score, again.length)
    assert first.actions.tolist() != other.actions.tolist()
    # The noise makes a difference: the same game without it plays other searches.
    quiet = play_episode(MobilityEvaluator(), NOISY_PUCT, 21, noise=False)
    assert not np.array_equal(quiet.policy[:3], first.policy[:3])


def test_the_root_noise_is_drawn_from_the_game_generator() -> None:
    state = GameState(initial_seed=6)
    settings = SearchSettings.of(NOISY_PUCT, noise=True)
    searcher = tree_searcher(MobilityEvaluator(), settings)
    game = searcher.game(np.random.default_rng(9))
    # The search draws the fair root's seed, then the Dirichlet noise over the legal moves.
    rng = copy.deepcopy(game.rng)
    root = fair_root(state, int(rng.integers(2**32)))
    noise = dirichlet_noise(rng, legal_mask(state), settings.dirichlet_alpha)
    [result] = searcher.search([game], [state])
    [(expected, _, _)] = puct_many([root], MobilityEvaluator(), settings, noise[None])
    assert result.visits == expected
    # Other noise, or none, gives another search of the same root.
    other = dirichlet_noise(np.random.default_rng(1), legal_mask(state), settings.dirichlet_alpha)
    [(with_other, _, _)] = puct_many([root], MobilityEvaluator(), settings, other[None])
    [(without, _, _)] = puct_many([root], MobilityEvaluator(), settings, None)
    assert with_other != expected
    assert without != expected
    assert sum(noise) == pytest.approx(1.0)
    assert set(np.flatnonzero(noise)) <= state.valid_actions()


def test_a_puct_search_keeps_the_subtree_in_the_game_object_it_returns() -> None:
    state = GameState(initial_seed=4)
    searcher = tree_searcher(MobilityEvaluator(), SearchSettings.of(NOISY_PUCT, noise=False))
    game = searcher.game(np.random.default_rng(0))
    [result] = searcher.search([game], [state])
    action = max(result.visits, key=result.visits.__getitem__)
    after = searcher.played(game, state, action, result)
    assert isinstance(after, GameSearch)
    assert after.subtree == (result.tree, action)
    assert after.rng is game.rng
    assert game.subtree is None  # the game's object is replaced, not changed


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
