"""The Gumbel rules have one definition (``core.gumbel_rules``): exact values by hand, and the
C++ search's own rules (``trimcts_cpp.gumbel_rules``, the Gumbel patch's ``gumbel_rules.h``)
held to it on the same cases. MuZero's latent search calls the reference itself."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import trimcts.trimcts_cpp as engine

from alphatriangle.core import gumbel_rules as ref

cpp = engine.gumbel_rules

C_VISIT, C_SCALE = 50.0, 0.1


def both(name: str, *args: Any) -> Any:
    """The reference's and the C++ result of rule ``name``; they must agree, to rounding."""
    expected = getattr(ref, name)(*args)
    got = getattr(cpp, name)(*args)
    if isinstance(expected, np.ndarray):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15, err_msg=name)
    else:
        assert got == expected, name
    return expected


@pytest.mark.parametrize(
    ("considered", "simulations", "expected"),
    [
        # 2 phases: 16 // (2 * 4) = 2 visits to each of 4, then 16 // (2 * 2) = 4 to the best 2.
        (4, 16, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]),
        # 4 phases of 32 // 4 = 8 shares: 1 visit to each of 16, then the best 8, then 4 twice.
        (16, 32, [0] * 16 + [1] * 8 + [2, 2, 2, 2, 3, 3, 3, 3]),
        (1, 3, [0, 1, 2]),  # one edge takes every simulation
        (2, 7, [0, 0, 1, 1, 2, 2, 3]),  # one phase: 7 // 2 = 3 each, then both stay
        (8, 4, [0, 0, 0, 0]),  # fewer simulations than edges: the first 4 get one each
    ],
)
def test_the_halving_schedule_by_hand(
    considered: int, simulations: int, expected: list[int]
) -> None:
    assert both("halving_schedule", considered, simulations) == expected


def test_the_halving_schedules_agree_everywhere() -> None:
    for considered in range(1, 40):
        for simulations in range(1, 70):
            both("halving_schedule", considered, simulations)


def test_logits_floor_a_zero_prior() -> None:
    out = both("logits", np.array([0.5, 0.0, 1.0]))
    np.testing.assert_array_equal(out, [math.log(0.5), math.log(np.finfo(np.float32).tiny), 0.0])


PRIOR3 = np.array([0.5, 0.3, 0.2])


def test_the_completed_q_of_unvisited_edges_is_the_mixed_value() -> None:
    # mixed = (v + sum N * sum_visited prior q / sum_visited prior) / (1 + sum N)
    #       = (2 + 3 * (0.5 * 4 + 0.3 * 1) / 0.8) / 4 = 2.65625
    q = np.array([4.0, 1.0, 123.0])  # q of an unevaluated edge is never read
    out = both("completed_q", 2.0, PRIOR3, q, np.array([2, 1, 0]))
    np.testing.assert_allclose(out, [4.0, 1.0, 2.65625], rtol=1e-15)
    # Nothing evaluated: every edge takes the node's own value.
    np.testing.assert_array_equal(both("completed_q", 2.0, PRIOR3, q, np.zeros(3, int)), [2.0] * 3)
    # Evaluated edges without prior mass: the mixed value is (v + 0) / (1 + sum N).
    out = both("completed_q", 2.0, np.array([0.0, 0.0, 1.0]), q, np.array([1, 1, 0]))
    np.testing.assert_allclose(out, [4.0, 1.0, 2.0 / 3.0], rtol=1e-15)


def test_sigma_rescales_completed_q_and_grows_with_the_visits() -> None:
    completed = np.array([4.0, 1.0, 2.65625])
    out = both("sigma", completed, np.array([2, 1, 0]), C_VISIT, C_SCALE)
    # (50 + max N = 2) * 0.1 = 5.2 times Q rescaled from [1, 4] to [0, 1].
    np.testing.assert_allclose(out, [5.2, 0.0, 5.2 * 1.65625 / 3.0], rtol=1e-14)
    more = both("sigma", completed, np.array([20, 1, 0]), C_VISIT, C_SCALE)
    np.testing.assert_allclose(more, [7.0, 0.0, 7.0 * 1.65625 / 3.0], rtol=1e-14)
    # All equal (nothing known yet): sigma is 0, not a division by zero.
    np.testing.assert_array_equal(both("sigma", np.full(3, 2.0), np.zeros(3, int), 50.0, 0.1), 0)


def test_the_improved_policy_tilts_the_prior_by_sigma() -> None:
    logits = np.log([0.8, 0.2])
    out = both("improved_policy", logits, np.array([5.2, 0.0]))
    a1 = 1.0 / (1.0 + math.exp(math.log(0.8) + 5.2 - math.log(0.2)))
    np.testing.assert_allclose(out, [1.0 - a1, a1], rtol=1e-12)
    np.testing.assert_allclose(both("improved_policy", logits, np.zeros(2)), [0.8, 0.2])


# A root with 6 legal edges after the first phase of n = 16, m = 4 (tests/test_gumbel.py plays
# this search on a hand-made game): g + logits = [-1.104, -1.803, -1.809, -1.597, -0.397,
# -3.303]; the top 4 (4, 0, 3, 1) hold 2 visits each, and q = [1, 5, _, 4, 2, _].
PRIOR6 = np.array([0.3, 0.1, 0.2, 0.15, 0.15, 0.1])
G6 = np.array([0.1, 0.5, -0.2, 0.3, 1.5, -1.0])
Q6 = np.array([1.0, 5.0, 0.0, 4.0, 2.0, 0.0])


def _scores(visits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = both("logits", PRIOR6)
    completed = both("completed_q", 2.5, PRIOR6, Q6, visits)
    return logits, both("sigma", completed, visits, C_VISIT, C_SCALE)


def test_the_root_edge_follows_the_schedule_then_the_score() -> None:
    schedule = ref.halving_schedule(4, 16)
    # Simulation 0: every edge has 0 visits, sigma is 0: the best by g + logits is 4.
    zero = np.zeros(6, int)
    logits, sigma = _scores(zero)
    assert both("root_edge", schedule, zero, G6, logits, sigma) == 4
    # Simulation 2 (4 and 0 visited once): the next by g + logits among the unvisited is 3.
    visits = np.array([1, 0, 0, 0, 1, 0])
    logits, sigma = _scores(visits)
    assert both("root_edge", schedule, visits, G6, logits, sigma) == 3
    # Simulation 8, phase 2 (2 visits each): by g + logits + sigma, sigma = 5.2 * rescaled q:
    # 4: -0.397 + 1.3, 0: -1.104, 3: -1.597 + 3.9, 1: -1.803 + 5.2: edge 1.
    visits = np.array([2, 2, 0, 2, 2, 0])
    logits, sigma = _scores(visits)
    assert both("root_edge", schedule, visits, G6, logits, sigma) == 1
    # Simulation 9: schedule[9] = 2 visits again; 1 has 3 now, so 3 is the best of 0, 3, 4.
    visits = np.array([2, 3, 0, 2, 2, 0])
    logits, sigma = _scores(visits)
    assert both("root_edge", schedule, visits, G6, logits, sigma) == 3


def test_a_root_off_its_schedule_is_an_error_in_both() -> None:
    visits = np.array([2, 0])
    args = ([0, 0, 1, 1], visits, np.zeros(2), np.log([0.5, 0.5]), np.zeros(2))
    with pytest.raises(ValueError, match="no root edge has the 1 visits the schedule asks for"):
        ref.root_edge(*args)
    with pytest.raises(ValueError, match="no root edge has the 1 visits the schedule asks for"):
        cpp.root_edge(*args)


def test_the_root_action_is_the_best_of_the_most_visited() -> None:
    # After n = 16: visits 2, 6, 0, 6, 2, 0; among 1 and 3 (N = 6, sigma scale 5.6),
    # 1 scores -1.803 + 5.6 = 3.80 and 3 scores -1.597 + 0.75 * 5.6 = 2.60.
    visits = np.array([2, 6, 0, 6, 2, 0])
    logits, sigma = _scores(visits)
    assert both("root_action", visits, G6, logits, sigma) == 1
    # Without noise (g = 0), 3's sigma and prior still lose to 1's: 5.6 - 2.303 > 4.2 - 1.897.
    assert both("root_action", visits, np.zeros(6), logits, sigma) == 1
    # One most-visited edge is played whatever its score.
    visits = np.array([2, 6, 0, 7, 2, 0])
    assert both("root_action", visits, G6, *_scores(visits)) == 3


def test_below_the_root_the_visits_lag_the_improved_policy_least() -> None:
    logits = both("logits", PRIOR3)
    # No visits: sigma = 0 and pi' = prior, so the highest prior, 0.
    zero = np.zeros(3, int)
    completed = both("completed_q", 2.0, PRIOR3, np.zeros(3), zero)
    sigma = both("sigma", completed, zero, C_VISIT, C_SCALE)
    assert both("interior_edge", logits, sigma, zero) == 0
    # 0 visited once with q = 1: 1 and 2 take the mixed value (2 + 1) / 2 = 1.5, the highest:
    # sigma = 5.1 * [0, 1, 1], pi' ~ [0.5, 0.3 e^5.1, 0.2 e^5.1]; 1 lags pi' most.
    visits = np.array([1, 0, 0])
    completed = both("completed_q", 2.0, PRIOR3, np.array([1.0, 0.0, 0.0]), visits)
    np.testing.assert_allclose(completed, [1.0, 1.5, 1.5])
    sigma = both("sigma", completed, visits, C_VISIT, C_SCALE)
    assert both("interior_edge", logits, sigma, visits) == 1
    # Ties go to the lowest edge.
    assert both("interior_edge", np.log([0.5, 0.5]), np.zeros(2), np.zeros(2, int)) == 0


def _random_node(rng: np.random.Generator) -> dict[str, Any]:
    n = int(rng.integers(1, 40))
    prior = rng.dirichlet(np.full(n, 0.3))
    prior[rng.random(n) < 0.1] = 0.0  # some edges the network rules out
    visits = rng.integers(0, 6, n) * (rng.random(n) < 0.6)
    pending = np.minimum(visits, rng.integers(0, 2, n))
    return {
        "prior": prior,
        "visits": visits,
        "evaluated": visits - pending,
        "q": rng.normal(20.0, 8.0, n),
        "value": float(rng.normal(20.0, 8.0)),
        "gumbel": rng.gumbel(size=n),
    }


@pytest.mark.parametrize("case", range(200))
def test_the_cpp_rules_are_the_reference_on_random_nodes(case: int) -> None:
    node = _random_node(np.random.default_rng(case))
    visits = node["visits"]
    logits = both("logits", node["prior"])
    completed = both("completed_q", node["value"], node["prior"], node["q"], node["evaluated"])
    c_visit, c_scale = [(50.0, 0.1), (0.0, 1.0), (19.652, 0.01)][case % 3]
    sigma = both("sigma", completed, visits, c_visit, c_scale)
    both("improved_policy", logits, sigma)
    both("interior_edge", logits, sigma, visits)
    both("root_action", visits, node["gumbel"], logits, sigma)
    # A schedule whose next entry asks for the visits of one of the edges.
    schedule = [0] * int(visits.sum()) + [int(visits[case % len(visits)])]
    both("root_edge", schedule, visits, node["gumbel"], logits, sigma)
