"""Searches cannot know the hands the game has not dealt yet (``GameSearch``, ``fair_root``)."""

import copy

import numpy as np
from trianglengin import GameState

from alphatriangle.core.config import MCTSConfig
from alphatriangle.core.players import MCTSPlayer
from alphatriangle.core.search import (
    GameSearch,
    PolicyValue,
    UniformEvaluator,
    fair_root,
    hand_size,
    search,
    visit_distribution,
)
from alphatriangle.core.selfplay import play_episode

SEARCH = MCTSConfig(variant="puct", simulations=64, mcts_batch_size=8)


class MobilityEvaluator(UniformEvaluator):
    """Uniform priors; value = banked score + 0.01 per legal move. Unlike a constant bonus for
    the pieces in hand, the number of legal moves depends on how a refilled hand fits each
    child's board, so a search that sees the real refills ranks moves by them."""

    def evaluate_state(self, state: GameState) -> PolicyValue:
        prior, score = super().evaluate_state(state)
        return prior, score + 0.01 * len(state.valid_actions())


def last_piece_state(seed: int = 4) -> GameState:
    """Two moves into a game: one piece left, so every move is followed by a random refill."""
    state = GameState(initial_seed=seed)
    for _ in range(2):
        state.step(min(state.valid_actions()))
    assert hand_size(state) == 1
    return state


def twin_with_another_future(state: GameState) -> GameState:
    """Same board, hand, score and step as ``state``; another generator for its refills."""
    twin = state.copy()
    twin.reseed(99)
    assert twin.get_shapes() == state.get_shapes()
    assert (twin.game_score(), twin.current_step) == (state.game_score(), state.current_step)
    follow, other = state.copy(), twin.copy()
    follow.step(min(follow.valid_actions()))
    other.step(min(other.valid_actions()))
    assert follow.get_shapes() != other.get_shapes(), "the twins must deal different hands"
    return twin


def searches(peek: bool = False, mcts_cfg: MCTSConfig = SEARCH) -> GameSearch:
    return GameSearch(
        MobilityEvaluator(), mcts_cfg, np.random.default_rng(3), noise=False, peek=peek
    )


def test_games_differing_only_in_their_generator_get_the_same_search() -> None:
    real = last_piece_state()
    twin = twin_with_another_future(real)
    fair, fair_twin = searches().run(real), searches().run(twin)
    assert (fair.visits, fair.depth) == (fair_twin.visits, fair_twin.depth)
    # The same search from copies of the real games (what every search did before) differs:
    # it ranks moves by the refills the real game is about to deal.
    assert searches(peek=True).run(real).visits != searches(peek=True).run(twin).visits


def test_players_with_the_same_seed_choose_the_same_moves_whatever_the_real_future() -> None:
    real = last_piece_state()
    twin = twin_with_another_future(real)
    choices = []
    for state in (real, twin):
        player = MCTSPlayer(MobilityEvaluator(), SEARCH)
        player.reset(5)
        choices.append(player.choose(state))
    assert choices[0] == choices[1]


def test_the_root_seed_comes_from_the_player_generator() -> None:
    real = last_piece_state()
    game = searches()
    seed = int(copy.deepcopy(game.rng).integers(2**32))
    visits = game.run(real).visits
    expected, _, _ = search(fair_root(real, seed), MobilityEvaluator(), SEARCH, noise=False)
    assert visits == expected


def test_the_subtree_is_reused_until_the_real_game_deals_a_new_hand() -> None:
    state = GameState(initial_seed=4)
    game = searches()
    results, roots, refills = [], [], []
    for _ in range(4):  # hands of 3, 2, 1, then a new hand of 3
        roots.append((state.copy(), int(copy.deepcopy(game.rng).integers(2**32))))
        visits = game.run(state).visits
        results.append(visits)
        action = max(visits, key=visits.__getitem__)
        refills.append(hand_size(state) == 1)
        game.played(state, action)
        state.step(action)
    assert refills == [False, False, True, False]
    # A reused subtree brings the visits it already had; a new tree has exactly one per
    # simulation. Moves 2 and 3 reuse; move 4 follows the refill and starts a new tree: it is
    # exactly the search of a fresh root with the seed it drew.
    totals = [sum(visits.values()) for visits in results]
    assert totals[0] == totals[3] == SEARCH.simulations
    assert totals[1] > SEARCH.simulations
    assert totals[2] > SEARCH.simulations
    for move in (0, 3):
        position, seed = roots[move]
        fresh, _, _ = search(fair_root(position, seed), MobilityEvaluator(), SEARCH, noise=False)
        assert results[move] == fresh
    position, seed = roots[1]
    fresh, _, _ = search(fair_root(position, seed), MobilityEvaluator(), SEARCH, noise=False)
    assert results[1] != fresh  # the reused tree, not a new one


def test_without_tree_reuse_every_search_is_new() -> None:
    game = searches(mcts_cfg=SEARCH.model_copy(update={"tree_reuse": False}))
    state = GameState(initial_seed=4)
    for _ in range(3):
        visits = game.run(state).visits
        assert sum(visits.values()) == SEARCH.simulations
        action = max(visits, key=visits.__getitem__)
        game.played(state, action)
        state.step(action)


def _replay(seed: int, peek: bool, moves: int) -> list[np.ndarray]:
    """The first ``moves`` searches of a noiseless argmax game driven by ``GameSearch``."""
    state = GameState(initial_seed=seed)
    game = GameSearch(
        MobilityEvaluator(), SEARCH, np.random.default_rng(seed), noise=False, peek=peek
    )
    policies = []
    for _ in range(moves):
        visits = game.run(state).visits
        policy = visit_distribution(visits, 360)
        action = int(np.argmax(policy))
        policies.append(policy)
        game.played(state, action)
        state.step(action)
    return policies


def test_self_play_searches_are_the_fair_ones() -> None:
    record = play_episode(MobilityEvaluator(), SEARCH, seed=4, noise=False, temperature_moves=0)
    moves = min(record.length, 12)
    fair = _replay(4, peek=False, moves=moves)
    np.testing.assert_array_equal(record.policy[:moves], np.stack(fair))
    clairvoyant = _replay(4, peek=True, moves=moves)
    assert any(not np.array_equal(a, b) for a, b in zip(fair, clairvoyant, strict=True))
