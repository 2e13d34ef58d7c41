"""Feature extraction on hand-made states, with hand-computed expected values."""

import numpy as np
import pytest
from trianglengin import EnvConfig, GameState, Shape

from alphatriangle.core.features import (
    FOOTPRINT_OFFSETS,
    FOOTPRINT_START,
    SLOT_FEATURES,
    extract_batch,
    extract_features,
    feature_spec,
    valid_mask_from_grid,
)

ROWS, COLS, CELLS = 8, 15, 120
PLAYABLE_CELLS = 9 + 11 + 13 + 15 + 15 + 13 + 11 + 9  # the default board's row widths
UP_TRIANGLE = Shape([(0, 0, True)], (255, 0, 0), 0)
# A down triangle at the anchor with an up triangle to its right: anchor must be a down cell.
DOWN_UP_PAIR = Shape([(0, 0, False), (0, 1, True)], (0, 255, 0), 1)


def single_shape_state() -> GameState:
    state = GameState(initial_seed=0)
    state.debug_set_shapes([UP_TRIANGLE, None, None])
    return state


def test_shapes_follow_the_default_env() -> None:
    spec = feature_spec()
    cfg = EnvConfig()
    assert spec.grid_shape == (9, cfg.ROWS, cfg.COLS)
    assert spec.other_dim == 3 * SLOT_FEATURES + 3 == 45
    assert spec.action_dim == 360
    grid, other = extract_features(GameState(initial_seed=3))
    assert grid.shape == (9, 8, 15)
    assert grid.dtype == np.float32
    assert other.shape == (45,)
    assert other.dtype == np.float32


def test_orientation_matches_the_engine() -> None:
    state = single_shape_state()
    up = extract_features(state)[0][1]
    # trianglengin: (row + col) odd is an up cell. An up triangle fits at (0, 3), not (0, 4).
    assert up[0, 3] == 1.0
    assert up[0, 4] == 0.0
    assert up[1, 3] == 0.0
    assert up[1, 4] == 1.0
    assert 3 in state.valid_actions()
    assert 4 not in state.valid_actions()


def test_empty_board_with_one_up_triangle() -> None:
    state = single_shape_state()
    grid, other = extract_features(state)
    playable = ~state.get_grid_data_np()["death"]
    r, c = np.indices((ROWS, COLS))
    up = (r + c) % 2 == 1

    np.testing.assert_array_equal(grid[0], np.zeros((ROWS, COLS)))
    np.testing.assert_array_equal(grid[1], up.astype(np.float32))
    np.testing.assert_array_equal(grid[2], playable.astype(np.float32))
    # Row 0 is playable on columns 3..11: one horizontal line of 9 empty cells, so every cell
    # has 8 other empties: 1 / (1 + 8).
    np.testing.assert_array_equal(grid[3, 0, 3:12], np.full(9, np.float32(1 / 9)))
    assert grid[3, 0, :3].sum() == 0
    assert grid[3, 0, 12:].sum() == 0
    # The only shape is a single up triangle: it fits on every playable up cell.
    np.testing.assert_array_equal(grid[6], (playable & up).astype(np.float32))
    np.testing.assert_array_equal(grid[7], np.zeros((ROWS, COLS)))
    np.testing.assert_array_equal(grid[8], np.zeros((ROWS, COLS)))
    legal = int((playable & up).sum())
    assert legal == len(state.valid_actions()) == 48

    slot0 = np.zeros(SLOT_FEATURES, dtype=np.float32)
    slot0[:4] = [1.0, 1.0, 1 / 6, legal / CELLS]
    slot0[FOOTPRINT_START + FOOTPRINT_OFFSETS.index((0, 0))] = 1.0
    expected = np.concatenate([slot0, np.zeros(2 * SLOT_FEATURES), [0.0, 0.0, 2 / 3]])
    np.testing.assert_array_equal(other, expected.astype(np.float32))


def test_nearly_full_row_and_counts() -> None:
    state = single_shape_state()
    for col in range(3, 11):  # fill row 0 except its last cell (0, 11)
        state.debug_toggle_cell(0, col)
    grid, other = extract_features(state)
    np.testing.assert_array_equal(grid[0, 0], (np.arange(COLS) >= 3) & (np.arange(COLS) < 11))
    # (0, 11) is the last empty cell of its row: filling it alone completes the line.
    assert grid[3, 0, 11] == 1.0
    # Occupied cells of that row see one other empty cell.
    np.testing.assert_array_equal(grid[3, 0, 3:11], np.full(8, 0.5, dtype=np.float32))
    # (0, 11) is an up cell, so the single up triangle completes the row there (action 11).
    assert grid[6, 0, 11] == 1.0
    assert 11 in state.valid_actions()
    assert other[-3] == np.float32(8 / PLAYABLE_CELLS)


def test_shape_encoding_and_step() -> None:
    state = GameState(initial_seed=0)
    state.debug_set_shapes([None, DOWN_UP_PAIR, UP_TRIANGLE])
    grid, other = extract_features(state)
    slot1 = other[SLOT_FEATURES : 2 * SLOT_FEATURES]
    footprint = np.zeros(len(FOOTPRINT_OFFSETS), dtype=np.float32)
    footprint[[FOOTPRINT_OFFSETS.index((0, 0)), FOOTPRINT_OFFSETS.index((0, 1))]] = 1.0
    assert slot1[0] == 1.0
    assert slot1[1] == 0.0
    assert slot1[2] == np.float32(2 / 6)
    np.testing.assert_array_equal(slot1[FOOTPRINT_START:], footprint)
    assert slot1[3] == np.float32(grid[7].sum() / CELLS)
    np.testing.assert_array_equal(other[:SLOT_FEATURES], np.zeros(SLOT_FEATURES))
    assert other[-1] == np.float32(1 / 3)

    state.step(min(state.valid_actions()))
    assert extract_features(state)[1][-2] == np.float32(1 / 500)


def test_valid_planes_are_the_action_mask_and_batch_matches_single() -> None:
    states = [GameState(initial_seed=seed) for seed in range(4)]
    for state in states[1:]:
        state.step(min(state.valid_actions()))
    grid, other = extract_batch(states)
    mask = valid_mask_from_grid(grid)
    for i, state in enumerate(states):
        assert set(np.flatnonzero(mask[i]).tolist()) == state.valid_actions()
        single_grid, single_other = extract_features(state)
        np.testing.assert_array_equal(grid[i], single_grid)
        np.testing.assert_array_equal(other[i], single_other)


def test_lines_match_the_engine_clears() -> None:
    """Every line the features know clears in trianglengin exactly when its last cell fills."""
    spec = feature_spec()
    for incidence in spec.incidence:
        for line in incidence:
            cells = [divmod(int(i), COLS) for i in np.flatnonzero(line)]
            state = GameState(initial_seed=0)
            for r, c in cells[:-1]:
                state.debug_toggle_cell(r, c)
                assert state.get_last_cleared_triangles() == 0
            state.debug_toggle_cell(*cells[-1])
            assert state.get_last_cleared_triangles() == len(cells)


def test_shape_outside_the_footprint_is_rejected() -> None:
    state = GameState(initial_seed=0)
    state.debug_set_shapes([Shape([(0, 0, True), (0, 3, False)], (1, 1, 1), 2), None, None])
    with pytest.raises(ValueError, match=r"offset \(0, 3\) lies outside the feature footprint"):
        extract_features(state)
