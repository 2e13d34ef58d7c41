"""The board's symmetries checked against trianglengin: a transformed position, built as a real
game, has exactly the transformed features, legal moves, next boards and rewards."""

from __future__ import annotations

import numpy as np
import pytest
from trianglengin import GameState, Shape

from alphatriangle.core.buffer import Batch
from alphatriangle.core.features import SLOT_FEATURES, extract_batch, extract_features
from alphatriangle.core.symmetry import (
    SHAPE_DISCOVERY_SEEDS,
    SYMMETRY_NAMES,
    SymmetryTables,
    augment_batch,
    choose_symmetries,
    hand_shapes,
    known_shapes,
    symmetry_tables,
)

ROWS, COLS, CELLS, SLOTS = 8, 15, 120, 3
STEP_FEATURE = SLOTS * SLOT_FEATURES + 1
"""The ``min(step / 500, 1)`` feature: a game built by hand starts at step 0, so it is the one
feature a rebuilt position cannot share with the original."""
INVERSE = {
    "identity": "identity",
    **{f"rot{d}": f"rot{(360 - d) % 360}" for d in range(60, 360, 60)},
}
INVERSE.update({f"mirror{d}": f"mirror{d}" for d in range(0, 360, 60)})


def positions(seeds: range, every: int) -> list[GameState]:
    """Positions of games played with uniformly random legal moves, every ``every`` moves."""
    found = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        state = GameState(initial_seed=seed)
        while not state.is_over():
            if state.current_step % every == 0:
                found.append(state.copy())
            state.step(int(rng.choice(sorted(state.valid_actions()))))
    return found


POSITIONS = positions(range(8), 3)


def batch_of(states: list[GameState], policy: np.ndarray | None = None) -> Batch:
    grid, other = extract_batch(states)
    mask = grid[:, 6:].reshape(len(states), -1) > 0.5
    if policy is None:
        policy = mask / mask.sum(axis=1, keepdims=True)
    n = len(states)
    return Batch(
        grid,
        other,
        policy.astype(np.float32),
        mask,
        np.arange(n, dtype=np.float32),
        np.ones(n, np.float32),
        np.arange(n, dtype=np.int64),
    )


def rebuilt(state: GameState, name: str, tables: SymmetryTables) -> GameState:
    """``state`` transformed by ``name``, built as a new trianglengin game: the image of its
    board cell by cell, and the image of each shape of its hand."""
    g = tables.names.index(name)
    out = GameState(initial_seed=0)
    shapes: list[Shape | None] = []
    for shape in state.get_shapes():
        if shape is None:
            shapes.append(None)
            continue
        k = tables.shapes.index(tuple(shape.triangles))
        image = tables.shapes[int(tables.shape_image[g, k])]
        shapes.append(Shape(list(image), shape.color, shape.color_id))
    # The hand first: the engine ends a game whose hand has no move after a toggle, and every
    # board on the way to the image, a subset of it, has the moves the image has.
    out.debug_set_shapes(shapes)
    occupied = state.get_grid_data_np()["occupied"].reshape(CELLS)
    for cell in np.flatnonzero(occupied):
        r, c = divmod(int(tables.cell_map[g, cell]), COLS)
        out.debug_toggle_cell(r, c)
    return out


def exact_for(state: GameState, g: int, tables: SymmetryTables) -> bool:
    _, other = extract_features(state)
    return bool((tables.shape_image[g, hand_shapes(other[None], tables)[0]] >= 0).all())


def test_every_symmetry_of_the_hexagon_maps_the_default_board() -> None:
    tables = symmetry_tables()
    assert tables.names == SYMMETRY_NAMES
    g = {name: tables.names.index(name) for name in tables.names}
    r, c = np.divmod(np.arange(CELLS), COLS)
    playable = extract_features(GameState(initial_seed=0))[0][2].reshape(CELLS) > 0
    # The reflections along the array's axes have formulas to check the tables against.
    assert (tables.cell_map[g["mirror0"]][playable] == (r * COLS + COLS - 1 - c)[playable]).all()
    assert (
        tables.cell_map[g["mirror180"]][playable] == ((ROWS - 1 - r) * COLS + c)[playable]
    ).all()
    assert (
        tables.cell_map[g["rot180"]][playable] == ((ROWS - 1 - r) * COLS + COLS - 1 - c)[playable]
    ).all()
    # Left-right keeps rows (h lines) and swaps the diagonals; 60-degree turns cycle them.
    assert tables.direction_map[g["mirror0"]].tolist() == [0, 2, 1]
    assert sorted(tables.direction_map[g["rot60"]].tolist()) == [0, 1, 2]
    assert tables.direction_map[g["rot60"]].tolist() != [0, 1, 2]
    for name in tables.names:
        assert sorted(tables.cell_map[tables.names.index(name)][playable].tolist()) == sorted(
            np.flatnonzero(playable).tolist()
        )


def test_no_symmetry_but_the_identity_maps_the_shape_set_onto_itself() -> None:
    tables = symmetry_tables()
    outside = (tables.shape_image < 0).sum(axis=1)
    assert outside[0] == 0
    assert (outside[1:] >= 1).all()
    mirror = tables.names.index("mirror0")
    undealt = [tables.shapes[k] for k in np.flatnonzero(tables.shape_image[mirror] < 0)]
    assert sorted(len(shape) for shape in undealt) == [4, 5]


def test_shape_discovery_finds_every_shape_the_engine_deals() -> None:
    more: set[tuple[tuple[int, int, bool], ...]] = set()
    for seed in range(SHAPE_DISCOVERY_SEEDS, SHAPE_DISCOVERY_SEEDS + 600):
        state = GameState(initial_seed=seed)
        more.update(tuple(s.triangles) for s in state.get_shapes() if s is not None)
    assert more <= set(known_shapes())
    # trianglengin's anchor is the first triangle in (row, col) order, at offset (0, 0).
    assert all(shape[0][:2] == (0, 0) for shape in known_shapes())


@pytest.mark.parametrize("name", SYMMETRY_NAMES)
def test_a_transformed_position_is_the_engines_transformed_game(name: str) -> None:
    tables = symmetry_tables()
    g = tables.names.index(name)
    states = [s for s in POSITIONS if exact_for(s, g, tables)]
    assert len(states) >= 10
    for state in states:
        image = rebuilt(state, name, tables)
        base = batch_of([state])
        moved = augment_batch(base, np.array([g]), tables)
        grid, other = extract_features(image)
        np.testing.assert_array_equal(moved.grid[0], grid)
        keep = np.arange(other.shape[0]) != STEP_FEATURE
        np.testing.assert_array_equal(moved.other[0][keep], other[keep])
        assert moved.other[0, STEP_FEATURE] == base.other[0, STEP_FEATURE]
        assert set(np.flatnonzero(moved.valid_mask[0]).tolist()) == image.valid_actions()

        # Every legal move, as a one-hot policy, lands on the move whose consequences are the
        # transforms of the original's: next board, score gained, triangles cleared.
        legal = sorted(state.valid_actions())
        one_hot = np.zeros((len(legal), SLOTS * CELLS), np.float32)
        one_hot[np.arange(len(legal)), legal] = 1.0
        grid_1, other_1 = extract_batch([state])
        repeated = Batch(
            np.repeat(grid_1, len(legal), axis=0),
            np.repeat(other_1, len(legal), axis=0),
            one_hot,
            np.repeat(base.valid_mask, len(legal), axis=0),
            np.zeros(len(legal), np.float32),
            np.ones(len(legal), np.float32),
            np.arange(len(legal), dtype=np.int64),
        )
        images = augment_batch(repeated, np.full(len(legal), g), tables).policy
        assert (images.sum(axis=1) == 1.0).all()
        for action, row in zip(legal, images, strict=True):
            after, after_image = state.copy(), image.copy()
            score, score_image = state.game_score(), image.game_score()
            after.step(action)
            after_image.step(int(np.argmax(row)))
            # The same reward; the scores before differ, so the sums round differently.
            gained = after.game_score() - score
            assert after_image.game_score() - score_image == pytest.approx(gained, abs=1e-9)
            assert after_image.get_last_cleared_triangles() == after.get_last_cleared_triangles()
            board = after.get_grid_data_np()["occupied"].reshape(CELLS)
            expected = np.zeros(CELLS, bool)
            expected[tables.cell_map[g][board]] = True
            np.testing.assert_array_equal(
                after_image.get_grid_data_np()["occupied"].reshape(CELLS), expected
            )


def test_the_identity_leaves_a_batch_unchanged() -> None:
    tables = symmetry_tables()
    base = batch_of(POSITIONS)
    same = augment_batch(base, np.zeros(len(POSITIONS), np.int64), tables)
    for field in ("grid", "other", "policy", "valid_mask", "value_target", "weights", "indices"):
        np.testing.assert_array_equal(getattr(same, field), getattr(base, field))


@pytest.mark.parametrize("name", SYMMETRY_NAMES)
def test_a_symmetry_then_its_inverse_is_the_identity(name: str) -> None:
    tables = symmetry_tables()
    g, back = tables.names.index(name), tables.names.index(INVERSE[name])
    states = [s for s in POSITIONS if exact_for(s, g, tables)]
    rng = np.random.default_rng(7)
    base = batch_of(states)
    # A policy with distinct values on every legal move, so that a permutation shows.
    policy = rng.random(base.policy.shape).astype(np.float32) * base.valid_mask
    base = Batch(base.grid, base.other, policy, *(getattr(base, f) for f in _REST))
    there = augment_batch(base, np.full(len(states), g), tables)
    if name not in ("identity", "rot180", "mirror0", "mirror180"):
        assert not np.array_equal(there.grid, base.grid)
    assert (there.policy[~there.valid_mask] == 0).all()
    np.testing.assert_array_equal(np.sort(there.policy, axis=1), np.sort(base.policy, axis=1))
    home = augment_batch(there, np.full(len(states), back), tables)
    for field in ("grid", "other", "policy", "valid_mask"):
        np.testing.assert_array_equal(getattr(home, field), getattr(base, field))


_REST = ("valid_mask", "value_target", "weights", "indices")


def test_choose_draws_only_symmetries_that_map_the_hand() -> None:
    tables = symmetry_tables()
    base = batch_of(POSITIONS)
    shapes = hand_shapes(base.other, tables)
    allowed = tables.index(["mirror0", "rot60"])
    chosen = choose_symmetries(base.other, allowed, tables, np.random.default_rng(0))
    assert set(chosen.tolist()) == {0, *allowed.tolist()}
    assert (tables.shape_image[chosen[:, None], shapes] >= 0).all()
    # Seeded: the same generator seed draws the same symmetries.
    again = choose_symmetries(base.other, allowed, tables, np.random.default_rng(0))
    np.testing.assert_array_equal(chosen, again)
    none = choose_symmetries(base.other, np.zeros(0, np.int64), tables, np.random.default_rng(0))
    assert (none == 0).all()
    # A hand holding a shape whose image the engine does not deal never gets that symmetry.
    g = tables.names.index("mirror0")
    blocked = (tables.shape_image[g, shapes] < 0).any(axis=1)
    assert blocked.any()
    assert (chosen[blocked] != g).all()
