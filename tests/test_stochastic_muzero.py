"""Stochastic MuZero (``[muzero] stochastic``), by hand: the deal codes, which replay steps are
chance steps, the afterstate loss on a two-step trajectory, and the chance nodes of the latent
search (where they are, how a deal is selected, how values back up through them)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pytest
import torch

from alphatriangle.core.algorithm import algorithm_name, network_settings, searcher
from alphatriangle.core.config import AlphaTriangleConfig, MCTSConfig, MuZeroConfig
from alphatriangle.core.learner import Learner
from alphatriangle.core.muzero.network import (
    CHANCE_BITS,
    CHANCE_CODES,
    MuZeroNet,
    cell_masks,
    code_bits,
    deal_codes,
)
from alphatriangle.core.muzero.probe import clear_probe, predicted_rewards_and_q
from alphatriangle.core.muzero.replay import MuZeroBatch, TrajectoryBuffer
from alphatriangle.core.muzero.search import LatentSearcher, PuctTree, hand_of
from alphatriangle.core.muzero.support import from_logits
from alphatriangle.core.muzero.training import unrolled_loss
from alphatriangle.core.search import SearchSettings
from alphatriangle.core.selfplay import EpisodeRecord, SelfPlayGames
from tests.test_muzero import TINY_MODEL, _log_softmax, _record, _two_hot
from tests.test_muzero_learning import _hand

STOCHASTIC = MuZeroConfig(
    unroll_steps=2, value_support=3, reward_support=2, value_loss_weight=0.5, stochastic=True
)


def test_a_dealt_hand_is_one_code_per_slot_of_its_anchor_and_footprint_bits() -> None:
    other = _hand({0: [2, 7], 2: [0]})
    other[0 * 14 + 1] = 1.0  # slot 0's anchor must be an upward triangle
    codes = deal_codes(other[None])
    assert codes.tolist() == [[2**10 + 2**2 + 2**7, 0, 2**0]]
    bits = code_bits(torch.from_numpy(codes)).view(3, CHANCE_BITS)
    assert bits[0].tolist() == [0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1]
    assert bits[1].sum() == 0
    assert bits[2].tolist() == [1] + [0] * 10
    assert CHANCE_CODES == 2**11


def _game(hands: list[dict[int, list[int]]], first_action: int = 7) -> EpisodeRecord:
    """A game whose positions hold ``hands`` (the slots present and their footprints)."""
    record = _record(len(hands), first_action)
    record.other[:] = np.stack([_hand(h) for h in hands])
    return record


def test_replay_marks_the_moves_after_which_the_game_dealt_and_the_hand_it_dealt() -> None:
    buffer = TrajectoryBuffer(
        16, (9, 8, 15), 45, 360, unroll_steps=2, td_steps=1, discount=1.0, seed=3
    )
    # Hands of 2 and 1 pieces, then the deal of three shapes, then a hand of 2, which ends.
    dealt = {0: [1], 1: [2, 3], 2: [5]}
    buffer.add_episode(_game([{0: [0], 1: [4]}, {1: [4]}, dealt, {1: [2, 3], 2: [5]}]))
    batch = buffer.batch(np.array([0, 1, 3]), np.ones(3, np.float32))
    assert batch.deals is not None
    assert batch.deal_codes is not None
    # From t = 0: move 0 (hand of 2) no deal; move 1 (hand of 1) dealt position 2's hand.
    assert batch.deals[0].tolist() == [False, True]
    np.testing.assert_array_equal(batch.deal_codes[0, 1], [2**1, 2**2 + 2**3, 2**5])
    assert not batch.deal_codes[0, 0].any()
    assert batch.deals[1].tolist() == [True, False]
    # From t = 3, the last position: no position follows its move, so no deal to learn.
    assert batch.deals[2].tolist() == [False, False]


def test_the_afterstate_loss_of_a_tiny_network_on_a_two_step_sample_by_hand() -> None:
    torch.manual_seed(2)
    model = MuZeroNet(TINY_MODEL, STOCHASTIC).double()
    cfg = AlphaTriangleConfig(algorithm="muzero", model=TINY_MODEL, muzero=STOCHASTIC)
    rng = np.random.default_rng(0)
    grid, other = rng.random((1, 9, 8, 15)), rng.random((1, 45))
    policy = np.zeros((1, 3, 360))
    policy[0, :, [5, 6, 9]] = 1.0
    code = np.array([[1156, 0, 3]])
    batch = MuZeroBatch(
        grid=grid,
        other=other,
        actions=np.array([[5, 200]]),
        target_policy=policy,
        policy_mask=np.array([[True, True, True]]),
        target_value=np.array([[7.0, 3.0, 1.0]]),
        target_reward=np.array([[4.0, 0.0]]),
        weights=np.ones(1),
        indices=np.zeros(1, np.int64),
        deals=np.array([[False, True]]),
        deal_codes=np.stack([np.zeros((1, 3), np.int64), code], axis=1),
    )
    total, parts, _ = unrolled_loss(model, batch, cfg, torch.device("cpu"))

    # The same sample through the network's functions: step 1 does not deal (its state is
    # the afterstate), step 2 deals: Q(as2) against the target of position 2, sigma(as2)
    # against the dealt codes, and position 2's prediction from chance(as2, dealt hand).
    with torch.no_grad():
        s0 = model.represent(torch.from_numpy(grid), torch.from_numpy(other))
        p0, v0 = (t.numpy()[0] for t in model.predict_root(s0, torch.from_numpy(other)))
        r1, s1 = model.dynamics(s0, torch.tensor([5]))
        p1, v1 = (t.numpy()[0] for t in model.predict(s1))
        r2, as2 = model.dynamics(s1, torch.tensor([200]))
        q2, sigma2 = (t.numpy()[0] for t in model.afterstate_predict(as2))
        s2 = model.chance(as2, torch.from_numpy(code))
        p2, v2 = (t.numpy()[0] for t in model.predict(s2))
    r1, r2 = r1.numpy()[0], r2.numpy()[0]

    def ce(logits: np.ndarray, target: np.ndarray) -> float:
        return float(-(target * _log_softmax(logits)).sum())

    chance = -sum(_log_softmax(sigma2[slot])[code[0, slot]] for slot in range(3))
    step0 = ce(p0, policy[0, 0]) + 0.5 * ce(v0, _two_hot(7.0, 3))
    step1 = ce(p1, policy[0, 1]) + 0.5 * ce(v1, _two_hot(3.0, 3)) + ce(r1, _two_hot(4.0, 2))
    step2 = ce(p2, policy[0, 2]) + 0.5 * ce(v2, _two_hot(1.0, 3)) + ce(r2, _two_hot(0.0, 2))
    step2 += 0.5 * ce(q2, _two_hot(1.0, 3)) + chance
    assert total.item() == pytest.approx(step0 + (step1 + step2) / 2, rel=1e-9)
    assert parts["loss/chance"].item() == pytest.approx(chance / 2, rel=1e-9)
    assert parts["loss/afterstate_value"].item() == pytest.approx(
        ce(q2, _two_hot(1.0, 3)) / 2, rel=1e-9
    )


class ChanceTable:
    """A hand-made stochastic model: states and afterstates are ids; one slot, two codes.
    Records every call as ``(kind, state, edge)``."""

    EDGES: ClassVar = {(0, 0): (1, 1.0), (0, 1): (2, 0.0), (1, 1): (3, 0.5), (20, 0): (30, 0.5)}
    AFTER: ClassVar = {(0, 0): (10, 1.0, 2.0), (0, 1): (11, 0.0, 0.0), (1, 1): (12, 0.5, 1.0)}
    """``(state, action) -> (afterstate, reward, Q)``."""
    DEALS: ClassVar = {(10, 0): 20, (10, 1): 21}
    PRIOR: ClassVar = {0: [0.8, 0.2], 1: [0.3, 0.7]}
    VALUE: ClassVar = {0: 1.0, 1: 2.0, 2: 0.0, 3: 1.0, 20: 3.0, 21: -1.0, 30: 0.0}
    CHANCE: ClassVar = [0.7, 0.3]

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def _logits(self, states: Sequence[int]) -> np.ndarray:
        return np.log(np.array([self.PRIOR.get(s, [0.5, 0.5]) for s in states], np.float64))

    def initial(self, observations: Sequence[object]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.zeros((len(observations), 1)), self._logits([0] * len(observations)), np.ones(1)

    def recurrent(
        self, latents: np.ndarray, actions: np.ndarray, masks: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        pairs = [(int(s[0]), int(a)) for s, a in zip(latents, actions, strict=True)]
        self.calls += [("move", *p) for p in pairs]
        nxt = [self.EDGES[p][0] for p in pairs]
        return (
            np.array(nxt, np.float64)[:, None],
            np.array([self.EDGES[p][1] for p in pairs]),
            self._logits(nxt),
            np.array([self.VALUE[s] for s in nxt]),
        )

    def afterstate(
        self, latents: np.ndarray, actions: np.ndarray, masks: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        pairs = [(int(s[0]), int(a)) for s, a in zip(latents, actions, strict=True)]
        self.calls += [("afterstate", *p) for p in pairs]
        after = [self.AFTER[p] for p in pairs]
        return (
            np.array([a[0] for a in after], np.float64)[:, None],
            np.array([a[1] for a in after]),
            np.log(np.array([[self.CHANCE]] * len(pairs))),
            np.array([a[2] for a in after]),
        )

    def chance(
        self, afterstates: np.ndarray, codes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pairs = [(int(s[0]), int(c[0])) for s, c in zip(afterstates, codes, strict=True)]
        self.calls += [("deal", *p) for p in pairs]
        nxt = [self.DEALS[p] for p in pairs]
        return (
            np.array(nxt, np.float64)[:, None],
            self._logits(nxt),
            np.array([self.VALUE[s] for s in nxt]),
        )


def _search(simulations: int, hand: dict[int, list[int]]) -> tuple[PuctTree, ChanceTable]:
    mcts = MCTSConfig(variant="puct", simulations=simulations, chance_outcomes=16)
    settings = SearchSettings.of(
        mcts, noise=False, muzero=MuZeroConfig(discount=0.9, stochastic=True)
    )
    model = ChanceTable()
    [tree] = LatentSearcher(model, settings).run(
        ["root"], np.array([[True, True]]), [None], _hand(hand)[None]
    )
    assert isinstance(tree, PuctTree)
    return tree, model


def test_chance_nodes_follow_the_move_that_plays_the_hands_last_piece() -> None:
    # A hand of two: the root's moves do not deal, the moves below them do.
    _, model = _search(2, {0: [0], 1: [0]})
    assert model.calls == [("move", 0, 0), ("afterstate", 1, 1)]
    # A hand of one: the root's moves deal.
    _, model = _search(1, {2: [0]})
    assert model.calls == [("afterstate", 0, 0)]


def test_chance_node_selection_and_backup_by_hand() -> None:
    tree, model = _search(3, {0: [0]})
    # Sim 1: a0 by the prior; the game deals after it: afterstate 10 (reward 1, Q 2) becomes
    #   chance node 1 with its deals, drawn from (0.7, 0.3): both, chances renormalised.
    #   G(0, a0) = 1 + 0.9 * 2 = 2.8.
    # Sim 2: a0 again (one Q known: the prior); at node 1 the deal by P / (1 + N): code 0
    #   (0.7 > 0.3): state 20 (value 3), reached by no reward and no discount:
    #   G(1, c0) = 3, G(0, a0) = 1 + 0.9 * 3 = 3.7.
    # Sim 3: a0 (Q 3.25 on [2.8, 3.7], rescaled by the floor 1: 0.45 + 0.8 sqrt 3 / 3 c =
    #   1.027 against a1's (2.5 - 2.8) + 0.2 sqrt 3 c = 0.133); at node 1, 0.7 / 2 > 0.3: code
    #   0 again; at node 2 (state 20) a tie goes to a0, a move that does not deal: state 30
    #   (reward 0.5, value 0): G(2, a0) = 0.5, G(1, c0) = 0.5, G(0, a0) = 1 + 0.9 * 0.5.
    assert model.calls == [("afterstate", 0, 0), ("deal", 10, 0), ("move", 20, 0)]
    assert tree.is_chance[:4].tolist() == [False, True, False, False]
    assert tree.codes[1].tolist() == [[0], [1]]
    np.testing.assert_allclose(tree.prior[1, :2], [0.7, 0.3], rtol=1e-12)
    assert tree.moves[:4].tolist() == [0, 1, 1, 2]
    assert tree.reward[1, 0] == 0.0
    assert tree.reward[0, 0] == 1.0
    assert tree.visits[1, :2].tolist() == [2, 0]
    assert tree.value_sum[1, 0] == pytest.approx(3.0 + 0.5)
    assert tree.visits[0].tolist() == [3, 0]
    assert tree.value_sum[0, 0] == pytest.approx(2.8 + 3.7 + 1.45)
    # The chance node's value: its Q and the returns through its deals, (2 + 3.5) / 3.
    assert tree.mean_value(1) == pytest.approx((2.0 + 3.5) / 3)
    # The next deal at node 1 would be code 1: 0.7 / (1 + 2) < 0.3 / 1.
    assert tree.select_outcome(1) == 1
    sqrt3_c = math.sqrt(3) * (1.25 + math.log((3 + 19_652 + 1) / 19_652))
    assert 0.45 + 0.8 * sqrt3_c / 3 > -0.3 + 0.2 * sqrt3_c  # sim 3's choice of a0


def test_a_stochastic_run_is_its_own_network_and_self_play_trains_it() -> None:
    cfg = AlphaTriangleConfig.model_validate(
        {
            "algorithm": "muzero",
            "model": TINY_MODEL.model_dump(),
            "mcts": {"simulations": 6},
            "muzero": {"unroll_steps": 3, "td_steps": 5, "stochastic": True},
            "train": {"batch_size": 32, "min_buffer_size": 32},
        }
    )
    plain = cfg.model_copy(update={"muzero": cfg.muzero.model_copy(update={"stochastic": False})})
    assert network_settings(cfg) != network_settings(plain)
    assert algorithm_name(cfg).startswith("Stochastic MuZero (unroll 3")
    learner = Learner(cfg)
    games = SelfPlayGames(searcher(learner.model, cfg, noise=True), range(100, 103), 3)
    for record in games.play():
        learner.add_episode(record)
    batch = learner.buffer.sample(cfg.train.batch_size)
    assert batch.deals is not None
    assert batch.deals.any()
    first = learner.step(batch)
    for _ in range(20):
        last = learner.step(batch)
    assert {"loss/chance", "loss/afterstate_value"} <= set(first)
    assert last["loss/chance"] < first["loss/chance"]
    assert last["loss/total"] < first["loss/total"]


def test_the_probe_values_a_move_that_empties_the_hand_by_its_afterstate() -> None:
    probe = clear_probe(range(60), 12, every=1)
    hands = np.array([hand_of(o)[0] for o in probe.other])
    last, more = int(np.flatnonzero(hands == 1)[0]), int(np.flatnonzero(hands > 1)[0])
    torch.manual_seed(0)
    model = MuZeroNet(TINY_MODEL, STOCHASTIC).eval()
    rewards, q = predicted_rewards_and_q(model, probe.grid, probe.other, probe.legal, 0.5)
    for row, afterstate in ((last, True), (more, False)):
        action = int(np.flatnonzero(probe.legal[row])[0])
        with torch.no_grad():
            grid, other = (torch.from_numpy(x[row : row + 1]) for x in (probe.grid, probe.other))
            mask = torch.from_numpy(
                cell_masks(probe.other[row : row + 1], np.array([action]), 0, 360)
            )
            _, nxt = model.dynamics(model.represent(grid, other), torch.tensor([action]), mask)
            head = model.afterstate_predict(nxt)[0] if afterstate else model.predict(nxt)[1]
        value = float(from_logits(head)[0])
        assert q[row, action] == pytest.approx(rewards[row, action] + 0.5 * value, rel=1e-6)
