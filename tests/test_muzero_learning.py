"""What lets MuZero's model tell moves apart, by hand: the cells its reward reads, the
probe that measures it, the replay that shows the loss its rare rewards, and the search's
floor under the Q range."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from trianglengin import GameState

from alphatriangle import metric_names as m
from alphatriangle.core import algorithm, gumbel_rules
from alphatriangle.core.config import AlphaTriangleConfig, MCTSConfig, MuZeroConfig, TrainConfig
from alphatriangle.core.features import (
    FOOTPRINT_OFFSETS,
    FOOTPRINT_START,
    SLOT_FEATURES,
    extract_batch,
    valid_mask_from_grid,
)
from alphatriangle.core.learner import Learner
from alphatriangle.core.muzero.network import WINDOW, MuZeroNet, cell_masks, read_cells
from alphatriangle.core.muzero.probe import (
    PROBE_POSITIONS,
    PROBE_SEEDS,
    PROBE_SPACING,
    clear_probe,
    predicted_rewards_and_q,
    probe_metrics,
    ranking,
)
from alphatriangle.core.muzero.replay import CLEAR_REWARD, TrajectoryBuffer
from alphatriangle.core.muzero.search import GumbelTree, LatentSearcher, PuctTree
from alphatriangle.core.muzero.support import from_logits
from alphatriangle.core.search import SearchSettings
from alphatriangle.core.selfplay import EpisodeRecord
from alphatriangle.errors import ConfigError
from tests.test_muzero import TINY_MODEL, TableModel, _record, latent_settings

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
    cells = MuZeroNet(TINY_MODEL, MuZeroConfig(reward_read="cells"))
    pooled = MuZeroNet(TINY_MODEL, MuZeroConfig(reward_read="pooled"))
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


def test_the_root_policy_is_alphazeros_footprint_head_by_hand() -> None:
    torch.manual_seed(0)
    model = MuZeroNet(TINY_MODEL, MuZeroConfig(root_policy="footprint")).double()
    grid, other = (torch.from_numpy(a).double() for a in extract_batch([GameState(initial_seed=4)]))
    with torch.no_grad():
        s = model.represent(grid, other)
        root, value = model.predict_root(s, other)
        _, latent_value = model.predict(s)
        assert torch.equal(value, latent_value)  # the value is the latent head's
        assert torch.equal(model.initial(grid, other)[1], root)
        # logit(slot, y, x) = w_out . relu(E(slot) + sum over the offsets k the slot's shape
        # covers of W_k s[:, y + dr_k, x + dc_k] + b_k) + b_out; off the board, nothing.
        weight, bias = model.root_policy_in.weight[:, :, 0, 0], model.root_policy_in.bias
        assert bias is not None
        hid = TINY_MODEL.policy_hidden
        expected = np.zeros(3 * CELLS)
        for slot in range(3):
            features = other[0, slot * SLOT_FEATURES : (slot + 1) * SLOT_FEATURES]
            covered = features[FOOTPRINT_START : FOOTPRINT_START + WINDOW]
            for y in range(8):
                for x in range(15):
                    h = model.root_slot_embed(features).clone()
                    for k, (dr, dc) in enumerate(FOOTPRINT_OFFSETS):
                        if covered[k] and 0 <= y + dr < 8 and 0 <= x + dc < 15:
                            part = slice(k * hid, (k + 1) * hid)
                            h += weight[part] @ s[0, :, y + dr, x + dc] + bias[part]
                    out = model.root_policy_out.weight[0] @ torch.relu(h)
                    expected[slot * CELLS + y * 15 + x] = float(out + model.root_policy_out.bias)
    assert other[0, ::SLOT_FEATURES][:3].sum() == 3  # a full hand: three shapes read
    np.testing.assert_allclose(root[0].numpy(), expected, rtol=1e-12, atol=1e-12)
    # "conv": the root's policy is the latent head's.
    conv = MuZeroNet(TINY_MODEL, MuZeroConfig(root_policy="conv")).double()
    with torch.no_grad():
        s = conv.represent(grid, other)
        assert torch.equal(conv.predict_root(s, other)[0], conv.predict(s)[0])
    assert not hasattr(conv, "root_policy_in")
    # The root head shapes the weights: a checkpoint of one does not load into the other.
    base = AlphaTriangleConfig(algorithm="muzero", muzero=MuZeroConfig(root_policy="conv"))
    footprint = base.model_copy(update={"muzero": MuZeroConfig(root_policy="footprint")})
    assert algorithm.network_settings(base) != algorithm.network_settings(footprint)
    # "footprint" is the default.
    assert MuZeroConfig().root_policy == "footprint"


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


def test_the_probe_holds_positions_that_offer_a_clear_with_the_real_rewards() -> None:
    probe = clear_probe(range(40), 6, every=2)
    assert len(probe.grid) == 6
    np.testing.assert_array_equal(probe.legal, valid_mask_from_grid(probe.grid))
    assert probe.clears.any(axis=1).all()
    assert not (probe.clears & ~probe.legal).any()
    assert (probe.rewards[probe.clears] >= CLEAR_REWARD).all()
    assert (probe.rewards[probe.legal & ~probe.clears] < CLEAR_REWARD).all()
    # Q of every legal move is its predicted reward plus the discounted value after it, the
    # reward reading the footprint of the move's shape.
    torch.manual_seed(0)
    model = MuZeroNet(TINY_MODEL, MuZeroConfig(reward_support=2, value_support=3)).eval()
    rewards, q = predicted_rewards_and_q(model, probe.grid, probe.other, probe.legal, 0.5)
    action = int(np.flatnonzero(probe.legal[1])[0])
    with torch.no_grad():
        s = model.represent(torch.from_numpy(probe.grid[1:2]), torch.from_numpy(probe.other[1:2]))
        mask = torch.from_numpy(cell_masks(probe.other[1:2], np.array([action]), 0, 360))
        reward_logits, nxt = model.dynamics(s, torch.tensor([action]), mask)
        reward = float(from_logits(reward_logits)[0])
        value = float(from_logits(model.predict(nxt)[1])[0])
    assert rewards[1, action] == pytest.approx(reward, rel=1e-6)
    assert q[1, action] == pytest.approx(reward + 0.5 * value, rel=1e-6)
    assert np.isnan(q[~probe.legal]).all()
    metrics = probe_metrics(model, probe, 0.5)
    spread = np.nanmax(q, axis=1) - np.nanmin(q, axis=1)
    assert metrics[m.MUZERO_Q_SPREAD] == pytest.approx(float(spread.mean()), rel=1e-6)
    top, pairs = ranking(rewards, probe.clears, probe.legal)
    assert metrics[m.MUZERO_REWARD_RANK_CLEAR] == top
    assert metrics[m.MUZERO_REWARD_RANK_PAIRS] == pytest.approx(pairs, rel=1e-9)
    assert metrics[m.MUZERO_Q_RANK_CLEAR] == ranking(q, probe.clears, probe.legal)[0]
    with torch.no_grad():
        _, logits, _ = model.initial(torch.from_numpy(probe.grid), torch.from_numpy(probe.other))
    prior = np.where(probe.legal, logits.double().numpy(), np.nan)
    assert metrics[m.MUZERO_PRIOR_RANK_CLEAR] == ranking(prior, probe.clears, probe.legal)[0]
    # Each ranks on the legal moves only: a prior that puts a clear first among them scores 1
    # whatever the illegal moves get.
    first = np.where(probe.clears, 5.0, np.where(probe.legal, 1.0, np.nan))
    assert ranking(first, probe.clears, probe.legal)[0] == 1.0


def test_the_muzero_learner_reports_the_probe_every_probe_every_steps() -> None:
    cfg = AlphaTriangleConfig(
        algorithm="muzero",
        model=TINY_MODEL,
        muzero=MuZeroConfig(unroll_steps=2, value_support=3, reward_support=2, probe_every=2),
        train=TrainConfig(batch_size=4, min_buffer_size=1, buffer_capacity=64),
    )
    learner = Learner(cfg)
    learner.add_episode(_record(6))
    first = learner.step(learner.buffer.sample(4))
    assert not [name for name in first if name.startswith("muzero/")]
    second = learner.step(learner.buffer.sample(4))
    probe = clear_probe(PROBE_SEEDS, PROBE_POSITIONS, every=PROBE_SPACING)
    assert len(probe.grid) == PROBE_POSITIONS
    assert isinstance(learner.model, MuZeroNet)
    expected = probe_metrics(learner.model, probe, cfg.muzero.discount)
    assert {k: v for k, v in second.items() if k.startswith("muzero/")} == expected


def _game(rewards: list[float]) -> EpisodeRecord:
    record = _record(len(rewards))
    return EpisodeRecord(**{**record.__dict__, "rewards": np.array(rewards, np.float32)})


def test_positions_whose_unroll_holds_a_clear_are_oversampled_with_exact_weights() -> None:
    def buffer(oversample: float, beta: float = 1.0) -> TrajectoryBuffer:
        return TrajectoryBuffer(
            16,
            (9, 8, 15),
            45,
            360,
            unroll_steps=2,
            td_steps=1,
            discount=1.0,
            seed=5,
            clear_oversample=oversample,
            clear_oversample_beta=beta,
        )

    replay = buffer(4.0)
    replay.add_episode(_game([0.015, 0.015, 5.5, 0.015]))  # slots 0..3, a clear at move 2
    replay.add_episode(_game([0.015, 0.045]))  # slots 4, 5
    # Unrolls of 2 moves: t = 1 (moves 1, 2) and t = 2 (move 2, 3) hold the clear; t = 3's
    # only move is 3 (the game ends), slot 4 starts the next game.
    np.testing.assert_array_equal(replay.clear_ahead[:6], [0, 1, 1, 0, 0, 0])
    # sum c = 2 * 4 + 4 * 1 = 12: P = c / 12, weights 1 / (6 P).
    probs = replay.sampling_probabilities()
    np.testing.assert_allclose(probs, np.array([1, 4, 4, 1, 1, 1]) / 12, rtol=1e-15)
    batch = replay.sample(4000)
    expected_weight = {0: 2.0, 1: 0.5, 2: 0.5, 3: 2.0, 4: 2.0, 5: 2.0}
    assert batch.weights.tolist() == [expected_weight[int(i)] for i in batch.indices]
    # The weights average 1 over the draws: the loss keeps the uniform mean's expectation.
    assert float(probs @ (1.0 / (6 * probs))) == pytest.approx(1.0, rel=1e-15)
    share = np.isin(batch.indices, [1, 2]).mean()
    assert share == pytest.approx(8 / 12, abs=0.03)  # 2/6 of the positions, 8/12 of draws
    # The exponent beta: weights (1 / (6 P)) ** beta; 0 keeps the stated bias (unit weights).
    for beta, expected in ((0.0, [1.0, 1.0]), (0.5, [2.0**0.5, 0.5**0.5])):
        tilted = buffer(4.0, beta)
        tilted.add_episode(_game([0.015, 0.015, 5.5, 0.015]))
        tilted.add_episode(_game([0.015, 0.045]))
        drawn = tilted.sample(4000)
        weights = {int(i): float(w) for i, w in zip(drawn.indices, drawn.weights, strict=True)}
        assert weights[0] == pytest.approx(expected[0], rel=1e-6)
        assert weights[1] == pytest.approx(expected[1], rel=1e-6)
        assert np.isin(drawn.indices, [1, 2]).mean() == pytest.approx(8 / 12, abs=0.03)
    settings = {"clear_oversample": 3.0, "clear_oversample_beta": 0.25}
    made = algorithm.new_buffer(
        AlphaTriangleConfig.from_dict({"algorithm": "muzero", "muzero": settings})
    )
    assert isinstance(made, TrajectoryBuffer)
    assert (made.clear_oversample, made.clear_oversample_beta) == (3.0, 0.25)
    # The default keeps the stated bias: oversampled 4 times, unit weights.
    default = algorithm.new_buffer(AlphaTriangleConfig(algorithm="muzero"))
    assert isinstance(default, TrajectoryBuffer)
    assert (default.clear_oversample, default.clear_oversample_beta) == (4.0, 0.0)
    with pytest.raises(ConfigError, match=r"muzero\.clear_oversample_beta: Input should be"):
        AlphaTriangleConfig.from_dict({"muzero": {"clear_oversample_beta": 1.5}})
    # Off (1): uniform draws, unit weights, as PositionBuffer's.
    plain = buffer(1.0)
    plain.add_episode(_game([0.015, 0.015, 5.5, 0.015]))
    assert plain.sample(64).weights.tolist() == [1.0] * 64
    # A snapshot recomputes which positions hold a clear.
    again = buffer(4.0)
    again.load_state_dict(replay.state_dict())
    np.testing.assert_array_equal(again.clear_ahead, replay.clear_ahead)


def test_the_q_range_floor_of_sigma_by_hand() -> None:
    visits = np.array([1, 1, 1])
    # Scale (50 + 1) * 0.1 = 5.1. A spread of 0.01 (a model blind to the move): under the
    # floor of 1 it moves sigma by 0.051 at most; without a floor, by the whole 5.1.
    blind = np.array([0.0, 0.005, 0.01])
    np.testing.assert_allclose(
        gumbel_rules.sigma(blind, visits, 50.0, 0.1, 1.0), [0.0, 0.0255, 0.051], rtol=1e-12
    )
    np.testing.assert_allclose(
        gumbel_rules.sigma(blind, visits, 50.0, 0.1), [0.0, 2.55, 5.1], rtol=1e-12
    )
    # A clear (5.5 over the others) spans more than the floor: rescaled by its own range.
    clear = np.array([0.0, 5.5, 0.011])
    np.testing.assert_allclose(
        gumbel_rules.sigma(clear, visits, 50.0, 0.1, 1.0), [0.0, 5.1, 0.0102], rtol=1e-12
    )


def _floor_settings(variant: str, floor: float) -> SearchSettings:
    mcts = MCTSConfig.model_validate(
        {"variant": variant, "simulations": 4, "considered_actions": 2}
    )
    return SearchSettings.of(
        mcts, noise=False, muzero=MuZeroConfig(discount=0.9, q_range_floor=floor)
    )


def test_the_latent_search_rescales_q_by_at_least_its_floor() -> None:
    [gumbel] = LatentSearcher(TableModel(), _floor_settings("gumbel", 100.0)).run(
        ["root"], np.array([[True, True]]), [None]
    )
    assert isinstance(gumbel, GumbelTree)
    q = gumbel.value_sum[0] / gumbel.visits[0]
    assert gumbel.visits[0].tolist() == [2, 2]
    # Both root edges visited: sigma = (50 + 2) * 0.1 * (q - min q) / 100.
    _, sigma = gumbel.completed_sigma(0)
    np.testing.assert_allclose(sigma, 5.2 * (q - q.min()) / 100.0, rtol=1e-12)
    [puct] = LatentSearcher(TableModel(), _floor_settings("puct", 10.0)).run(
        ["root"], np.array([[True, True]]), [None]
    )
    assert isinstance(puct, PuctTree)
    # Q seen in the tree span [low, high] (here 2 to 4.1): rescaled by 10.
    assert puct.low == pytest.approx(2.0)
    assert puct.high == pytest.approx(4.1)
    np.testing.assert_allclose(
        puct._normalised(np.array([puct.low, puct.high, 5.0])),
        [0.0, 0.21, 0.3],
        rtol=1e-12,
    )


@pytest.mark.parametrize(
    ("section", "name", "value", "instead"),
    [
        ("train", "value_loss_weight", 0.5, "[muzero] value_loss_weight"),
        ("mcts", "cpuct", 2.0, "[muzero] pb_c_init and pb_c_base"),
        ("mcts", "max_depth", 8, "as deep as the simulations take it"),
        ("mcts", "tree_reuse", False, "starts afresh at every move"),
    ],
)
def test_settings_muzero_does_not_read_are_refused_under_muzero_only(
    section: str, name: str, value: object, instead: str
) -> None:
    data = {"algorithm": "muzero", section: {name: value}}
    with pytest.raises(ConfigError) as refused:
        AlphaTriangleConfig.from_dict(data, source="mz.toml")
    message = str(refused.value)
    assert f"{section}.{name} = {value!r} is not used by algorithm = 'muzero'" in message
    assert instead in message
    # AlphaZero reads it; MuZero takes it at its default.
    assert getattr(AlphaTriangleConfig.from_dict({**data, "algorithm": "alphazero"}), section)
    default = type(getattr(AlphaTriangleConfig(), section)).model_fields[name].default
    AlphaTriangleConfig.from_dict({"algorithm": "muzero", section: {name: default}})
