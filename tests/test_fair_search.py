"""Searches cannot know the hands the game has not dealt yet (``GameSearch``, ``fair_root``)."""

import copy

import numpy as np
from trianglengin import GameState

from alphatriangle.core.config import MCTSConfig
from alphatriangle.core.players import MCTSPlayer
from alphatriangle.core.search import (
    GameSearch,
    SearchResult,
    SearchSettings,
    TreeSearcher,
    fair_root,
    hand_size,
    puct_many,
    tree_searcher,
    visit_distribution,
)
from alphatriangle.core.selfplay import play_episode
from tests.helpers import MobilityEvaluator

SEARCH = MCTSConfig(variant="puct", simulations=64, mcts_batch_size=8)


class OneGame:
    """The searches of one game with a ``tree_searcher``, move by move."""

    def __init__(self, seed: int = 3, peek: bool = False, mcts_cfg: MCTSConfig = SEARCH) -> None:
        settings = SearchSettings.of(mcts_cfg, noise=False)
        self.searcher: TreeSearcher = tree_searcher(MobilityEvaluator(), settings, peek=peek)
        self.game: GameSearch = self.searcher.game(np.random.default_rng(seed))
        self.last: SearchResult | None = None

    def run(self, state: GameState) -> SearchResult:
        [self.last] = self.searcher.search([self.game], [state])
        return self.last

    def played(self, state: GameState, action: int) -> None:
        assert self.last is not None
        self.game = self.searcher.played(self.game, state, action, self.last)


def fresh_search(position: GameState, seed: int) -> dict[int, int]:
    """The visits of a new tree grown from ``fair_root(position, seed)``."""
    [(visits, _, _)] = puct_many(
        [fair_root(position, seed)], MobilityEvaluator(), SearchSettings.of(SEARCH, noise=False)
    )
    return visits


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


def test_games_differing_only_in_their_generator_get_the_same_search() -> None:
    real = last_piece_state()
    twin = twin_with_another_future(real)
    fair, fair_twin = OneGame().run(real), OneGame().run(twin)
    assert (fair.visits, fair.depth) == (fair_twin.visits, fair_twin.depth)
    # The same search from copies of the real games (what every search did before) differs:
    # it ranks moves by the refills the real game is about to deal.
    assert OneGame(peek=True).run(real).visits != OneGame(peek=True).run(twin).visits


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
    game = OneGame()
    seed = int(copy.deepcopy(game.game.rng).integers(2**32))
    assert game.run(real).visits == fresh_search(real, seed)


def test_the_subtree_is_reused_until_the_real_game_deals_a_new_hand() -> None:
    state = GameState(initial_seed=4)
    game = OneGame()
    results, roots, refills = [], [], []
    for _ in range(4):  # hands of 3, 2, 1, then a new hand of 3
        roots.append((state.copy(), int(copy.deepcopy(game.game.rng).integers(2**32))))
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
        assert results[move] == fresh_search(*roots[move])
    assert results[1] != fresh_search(*roots[1])  # the reused tree, not a new one


def test_without_tree_reuse_every_search_is_new() -> None:
    game = OneGame(mcts_cfg=SEARCH.model_copy(update={"tree_reuse": False}))
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
    game = OneGame(seed, peek=peek)
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
