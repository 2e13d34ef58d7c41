"""The installed engine and search work together (catches a broken extension build)."""

from trianglengin import EnvConfig, GameState
from trimcts import SearchConfiguration, run_mcts

from alphatriangle.core.search import UniformEvaluator


def test_full_game_with_uniform_search_visits_only_valid_actions() -> None:
    state = GameState(initial_seed=1)
    search = SearchConfiguration(max_simulations=24, mcts_batch_size=8)
    evaluator = UniformEvaluator()
    moves = 0
    while not state.is_over():
        valid = state.valid_actions()
        visits, _, depth = run_mcts(state, evaluator, search)
        assert visits, "an ongoing game must get a non-empty search result"
        assert set(visits) <= valid
        assert all(count >= 0 for count in visits.values())
        assert sum(visits.values()) >= search.max_simulations - 1
        assert depth >= 1.0
        _, done = state.step(max(visits, key=visits.__getitem__))
        moves += 1
        assert done == state.is_over()
    assert moves == state.current_step > 0
    assert state.get_outcome() == state.game_score()


def test_action_space_matches_design() -> None:
    cfg = EnvConfig()
    assert cfg.NUM_SHAPE_SLOTS * cfg.ROWS * cfg.COLS == 360
    assert all(0 <= a < 360 for a in GameState(initial_seed=0).valid_actions())
