"""What lets MuZero's model tell moves apart, by hand: the cells its reward reads, the
probe that measures it, the replay that shows the loss its rare rewards, and the search's
floor under the Q range."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alphatriangle.core import algorithm
from alphatriangle.core.config import AlphaTriangleConfig, ModelConfig, MuZeroConfig
from alphatriangle.core.features import FOOTPRINT_START, SLOT_FEATURES
from alphatriangle.core.muzero.network import WINDOW, MuZeroNet, cell_masks, read_cells
from alphatriangle.core.muzero.probe import ranking
from alphatriangle.core.muzero.replay import TrajectoryBuffer
from alphatriangle.core.muzero.search import LatentSearcher
from tests.test_muzero import TableModel, _record, latent_settings

CELLS = 8 * 15


def _cell_values() -> torch.Tensor:
    """``[1, 2, 8, 15]``: channel c, row r, column q holds ``1000 c + 100 r + q + 1``."""
    c, r, q = torch.meshgrid(
        torch.arange(2.0), torch.arange(8.0), torch.arange(15.0), indexing="ij"
    )
    return (1000 * c + 100 * r + q + 1)[None]


def test_the_reward_reads_the_window_of_cells_at_the_anchor_by_hand() -> None:
    s = _cell_values()
    # Slot 1, anchor row 2, column 5: action 1 * 120 + 2 * 15 + 5. The window is rows 2..3,
    # columns 3..7, offset-major, each offset's two channels side by side.
    read = read_cells(s, torch.tensor([1 * CELLS + 2 * 15 + 5]), None)[0].tolist()
    expected = []
    for dr in (0, 1):
        for dc in (-2, -1, 0, 1, 2):
            row, col = 2 + dr, 5 + dc
            expected += [100 * row + col + 1, 1000 + 100 * row + col + 1]
    assert read == expected
    # Anchor row 7, column 0 (slot 0): columns -2, -1 and row 8 are off the board: zeros.
    corner = read_cells(s, torch.tensor([7 * 15 + 0]), None)[0].view(WINDOW, 2)[:, 0].tolist()
    assert corner == [0, 0, 701, 702, 703, 0, 0, 0, 0, 0]
    # A mask reads only the cells it marks (here the anchor and the cell below it).
    mask = torch.zeros(1, WINDOW)
    mask[0, [2, 7]] = 1.0
    masked = read_cells(s, torch.tensor([2 * 15 + 5]), mask)[0].view(WINDOW, 2)[:, 0].tolist()
    assert masked == [0, 0, 206, 0, 0, 0, 0, 306, 0, 0]


def _hand(footprints: dict[int, list[int]]) -> np.ndarray:
    """Extra features ``[45]`` of a hand: ``footprints[slot]`` the covered offsets of a
    present slot's shape (the other slots empty)."""
    other = np.zeros(45, np.float32)
    for slot, covered in footprints.items():
        other[slot * SLOT_FEATURES] = 1.0  # present
        other[slot * SLOT_FEATURES + FOOTPRINT_START + np.array(covered)] = 1.0
    return other


def test_the_cells_read_are_the_footprint_while_the_hand_lasts_then_the_whole_window() -> None:
    other = np.stack([_hand({0: [2, 3, 7], 2: [1, 2]})] * 5)  # a hand of two shapes
    actions = np.array([0 * CELLS + 17, 2 * CELLS + 40, 1 * CELLS + 3, 2 * CELLS + 40, 17])
    depth = np.array([0, 1, 0, 2, 5])
    masks = cell_masks(other, actions, depth, 3 * CELLS)
    footprint_0, footprint_2 = np.zeros(WINDOW), np.zeros(WINDOW)
    footprint_0[[2, 3, 7]], footprint_2[[1, 2]] = 1, 1
    np.testing.assert_array_equal(masks[0], footprint_0)  # slot 0's shape, first move
    np.testing.assert_array_equal(masks[1], footprint_2)  # slot 2's, second move of two
    np.testing.assert_array_equal(masks[2], np.zeros(WINDOW))  # the empty slot 1
    np.testing.assert_array_equal(masks[3], np.ones(WINDOW))  # after the deal: unknown
    np.testing.assert_array_equal(masks[4], np.ones(WINDOW))


def test_the_network_reads_the_cells_only_with_reward_read_cells() -> None:
    torch.manual_seed(0)
    tiny = ModelConfig(channels=2, num_blocks=0, extra_hidden=3, policy_hidden=2, value_hidden=4)
    cells = MuZeroNet(tiny, MuZeroConfig(reward_read="cells"))
    pooled = MuZeroNet(tiny, MuZeroConfig(reward_read="pooled"))
    assert cells.reward_head[0].in_features == 2 * 2 + WINDOW * 2
    assert pooled.reward_head[0].in_features == 2 * 2
    # A mask that reads nothing gives the reward of the pooled features alone.
    s = torch.rand(1, 2, 8, 15)
    head = cells.reward_head
    with torch.no_grad():
        reward, nxt = cells.dynamics(s, torch.tensor([40]), torch.zeros(1, WINDOW))
        pooled_only = torch.cat([nxt.mean(dim=(2, 3)), nxt.amax(dim=(2, 3))], dim=1)
        by_hand = head(torch.cat([pooled_only, torch.zeros(1, WINDOW * 2)], dim=1))
    torch.testing.assert_close(reward, by_hand, rtol=0, atol=0)
    # The reward read shapes the weights: a checkpoint of one does not load into the other.
    base = AlphaTriangleConfig(algorithm="muzero")
    other_read = base.model_copy(update={"muzero": MuZeroConfig(reward_read="pooled")})
    assert algorithm.network_settings(base) != algorithm.network_settings(other_read)


def test_the_latent_search_reads_footprints_while_the_roots_hand_lasts() -> None:
    # TableModel's two actions are both slot 0 (ids 0 and 1); the root holds one shape, so
    # its edges read that shape's footprint and every edge below them the whole window.
    model = TableModel()
    other = _hand({0: [2, 7]})[None]
    LatentSearcher(model, latent_settings(3, variant="puct")).run(
        ["root"], np.array([[True, True]]), [None], other
    )
    footprint = [0.0] * WINDOW
    footprint[2] = footprint[7] = 1.0
    assert model.expanded == [(0, 0), (1, 1), (4, 0)]  # depths 0, 1, 2
    assert model.masks == [footprint, [1.0] * WINDOW, [1.0] * WINDOW]


def test_replay_batches_read_the_start_positions_hand() -> None:
    buffer = TrajectoryBuffer(
        16, (9, 8, 15), 45, 360, unroll_steps=2, td_steps=1, discount=1.0, seed=3
    )
    record = _record(3, first_action=CELLS + 7)  # slot 1 moves
    hand = _hand({1: [4], 2: [0]})  # two shapes: both unroll steps are in the hand
    record.other[:] = hand
    buffer.add_episode(record)
    batch = buffer.batch(np.array([0]), np.ones(1, np.float32))
    assert batch.cell_masks is not None
    expected = np.zeros((2, WINDOW), np.float32)
    expected[:, 4] = 1.0  # slot 1's footprint at both steps
    np.testing.assert_array_equal(batch.cell_masks[0], expected)
    record.other[:] = _hand({1: [4]})  # one shape: the second step follows a deal
    buffer.add_episode(record)
    batch = buffer.batch(np.array([3]), np.ones(1, np.float32))
    assert batch.cell_masks is not None
    np.testing.assert_array_equal(batch.cell_masks[0], [expected[0], np.ones(WINDOW)])


def test_the_ranking_of_clearing_moves_by_hand() -> None:
    nan = np.nan
    rewards = np.array([[5.0, 1.0, 2.0, nan], [1.0, 3.0, 2.0, 0.5], [2.0, 2.0, nan, nan]])
    clears = np.array([[True, False, False, False], [True, False, False, True], [True, False] * 2])
    legal = ~np.isnan(rewards)
    top, pairs = ranking(rewards, clears, legal)
    # Row 0: the clear (5) above both others; row 1: the best clear (1) below 3; row 2: a tie
    # is not above. Pairs: row 0 2/2, row 1 (1 > 3, 1 > 2, 0.5 > 3, 0.5 > 2) 0/4, row 2 0/1.
    assert top == pytest.approx(1 / 3)
    assert pairs == pytest.approx((1.0 + 0.0 + 0.0) / 3)
