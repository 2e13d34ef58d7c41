"""The installed engine and search work together (catches a broken extension build), and the
engine's patches (``scripts/patches/trianglengin-*``) do what they say."""

import numpy as np
import pytest
import trimcts
from trianglengin import EnvConfig, GameState, Shape

from alphatriangle.core.config import MCTSConfig
from alphatriangle.core.search import SearchSettings, UniformEvaluator, puct_many


def test_full_game_with_uniform_search_visits_only_valid_actions() -> None:
    state = GameState(initial_seed=1)
    settings = SearchSettings.of(
        MCTSConfig(variant="puct", simulations=24, mcts_batch_size=8), noise=False
    )
    evaluator = UniformEvaluator()
    moves = 0
    while not state.is_over():
        valid = state.valid_actions()
        [(visits, _, depth)] = puct_many([state.copy()], evaluator, settings)
        assert visits, "an ongoing game must get a non-empty search result"
        assert set(visits) <= valid
        assert all(count >= 0 for count in visits.values())
        assert sum(visits.values()) == settings.simulations
        assert sum(1 for count in visits.values() if count) >= 2  # not one path per search
        assert depth >= 1.0
        _, done = state.step(max(visits, key=visits.__getitem__))
        moves += 1
        assert done == state.is_over()
    assert moves == state.current_step > 0
    assert state.get_outcome() == state.game_score()


def test_the_released_single_root_search_is_not_exposed() -> None:
    # Its loop selects every simulation's path before evaluating any leaf (one path per
    # search) and seeds its noise from the machine's entropy: the patch removes its binding.
    with pytest.raises(RuntimeError, match="missing 'run_mcts_cpp'"):
        trimcts.run_mcts(
            GameState(initial_seed=0),
            UniformEvaluator(),  # type: ignore[arg-type]
            trimcts.SearchConfiguration(),
        )


def test_action_space_matches_design() -> None:
    cfg = EnvConfig()
    assert cfg.NUM_SHAPE_SLOTS * cfg.ROWS * cfg.COLS == 360
    assert all(0 <= a < 360 for a in GameState(initial_seed=0).valid_actions())


def _hands_after(state: GameState, moves: int) -> list[list[Shape | None]]:
    """The hand after each of ``moves`` lowest-id moves (several refills: a hand is 3 pieces)."""
    hands = []
    for _ in range(moves):
        if state.is_over():
            break
        state.step(min(state.valid_actions()))
        hands.append(state.get_shapes())
    return hands


def test_reseed_keeps_the_position_and_replaces_only_the_future_hands() -> None:
    real = GameState(initial_seed=7)
    real.step(min(real.valid_actions()))
    root = real.copy()
    root.reseed(12345)
    assert root.get_shapes() == real.get_shapes()
    for key, grid in real.get_grid_data_np().items():
        np.testing.assert_array_equal(root.get_grid_data_np()[key], grid)
    assert (root.game_score(), root.current_step) == (real.game_score(), real.current_step)
    assert root.valid_actions() == real.valid_actions()

    # A plain copy deals the real game's next hands; the reseeded one deals others, the same
    # ones for the same seed, and reseeding a copy leaves the real game's future alone.
    real_future = _hands_after(real.copy(), 9)
    assert _hands_after(real.copy(), 9) == real_future
    assert _hands_after(root.copy(), 9) != real_future
    again = real.copy()
    again.reseed(12345)
    assert _hands_after(again, 9) == _hands_after(root, 9)
    assert _hands_after(real, 9) == real_future


def test_reseed_refuses_seeds_outside_32_bits() -> None:
    state = GameState(initial_seed=0)
    for seed in (-1, 2**32):
        with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*32\)"):
            state.reseed(seed)
    state.reseed(2**32 - 1)
