"""The rules of Gumbel search, one node at a time: the reference every implementation follows.

Danihelka, Guez, Schrittwieser, Silver, "Policy improvement by planning with Gumbel" (ICLR
2022), as DeepMind's mctx implements it (``gumbel_muzero_policy``). MuZero's latent search
(``core.muzero.search``) calls these functions; the C++ search on the real game
(``scripts/patches/trimcts-1.3.0-gumbel.patch``, ``gumbel_rules.h``) writes the same functions
in C++, and ``tests/test_gumbel_rules.py`` holds both to these on the same hand-made cases.

Every function works on the ``n`` edges of one node that a search may take (at the root, the
legal moves), in action-id order, as float64/int arrays ``[n]``:

- ``prior``: the network's policy at the node; ``logits = log prior``.
- ``visits``: N(a), simulations through edge a, those still waiting for their leaf's value
  included (the C++ search evaluates leaves in batches).
- ``evaluated``: the simulations through a whose value has been backed up (``visits`` when no
  leaf is pending), and ``q``: the mean of those values (read only where ``evaluated > 0``).
- ``value``: the network's own value of the node.

Ties go to the lowest edge.
"""

from __future__ import annotations

import math

import numpy as np

TINY = float(np.finfo(np.float32).tiny)
"""The smallest prior a logit is taken of: ``log(0)`` would make an edge impossible."""

RANGE_FLOOR = 1e-8
"""The smallest range the completed Q are rescaled by by default (all equal: sigma is 0): the
C++ search on the real game uses this one, whose Q are real game scores. MuZero's latent
search passes its own floor (``[muzero] q_range_floor``): there any spread of predicted Q,
however meaningless, would otherwise be stretched to several logits."""


def halving_schedule(considered: int, simulations: int) -> list[int]:
    """Sequential halving as a schedule: root simulation ``k`` goes to the best edge (by
    ``root_edge``) among those with exactly ``schedule[k]`` visits.

    ``considered`` = m, the edges sampled by Gumbel-top-k (at most the legal moves); n =
    ``simulations``. ``ceil(log2 m)`` phases; in each, every remaining edge gets
    ``max(1, n // (phases * remaining))`` visits, then the better half stays (never fewer than
    2), until n is spent. With m = 4, n = 16: ``0 0 0 0 1 1 1 1 2 2 3 3 4 4 5 5`` (2 visits to
    each of the 4, then 4 more to each of the best 2). With m = 1 every simulation goes to the
    one edge: ``0 1 2 ...``.
    """
    if considered <= 1:
        return list(range(simulations))
    phases = math.ceil(math.log2(considered))
    visits = [0] * considered
    remaining, schedule = considered, list[int]()
    while len(schedule) < simulations:
        share = max(1, simulations // (phases * remaining))
        for _ in range(share):
            for i in range(remaining):
                schedule.append(visits[i])
                visits[i] += 1
        remaining = max(2, remaining // 2)
    return schedule[:simulations]


def logits(prior: np.ndarray) -> np.ndarray:
    """``log(max(prior, TINY))`` per edge."""
    out: np.ndarray = np.log(np.maximum(prior, TINY))
    return out


def completed_q(
    value: float, prior: np.ndarray, q: np.ndarray, evaluated: np.ndarray
) -> np.ndarray:
    """Q completed by the mixed value (mctx's ``qtransform_completed_by_mix_value``): ``q(a)``
    where ``evaluated(a) > 0``, else the mixed value, an estimate of the node's value that
    mixes its own ``value`` with the q of the evaluated edges, weighted by their priors::

        mixed = (value + sum_b evaluated(b) * sum_{a evaluated} prior(a) q(a)
                                            / sum_{a evaluated} prior(a)) / (1 + sum_b evaluated(b))

    (the middle term 0 when no evaluated edge has prior mass)."""
    known = evaluated > 0
    total = int(evaluated.sum())
    weight = float(prior[known].sum())
    mean_q = float(prior[known] @ q[known]) / weight if weight > 0 else 0.0
    mixed = (value + total * mean_q) / (1 + total)
    out: np.ndarray = np.where(known, q, mixed)
    return out


def sigma(
    completed: np.ndarray,
    visits: np.ndarray,
    c_visit: float,
    c_scale: float,
    range_floor: float = RANGE_FLOOR,
) -> np.ndarray:
    """``sigma(a) = (c_visit + max_b N(b)) * c_scale * rescaled(a)``, ``rescaled`` the completed
    Q min-max rescaled over the node's edges, ``(completed - min) / max(max - min,
    range_floor)``: scores have no fixed range, and the more visits, the more Q outweighs the
    prior. A spread below ``range_floor`` is rescaled to less than [0, 1]."""
    low, high = float(completed.min()), float(completed.max())
    scale = (c_visit + int(visits.max())) * c_scale
    out: np.ndarray = scale * ((completed - low) / max(high - low, range_floor))
    return out


def improved_policy(logits: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """``pi' = softmax(logits + sigma)``: the prior tilted toward the edges the search found
    good. At the root it is the policy target stored for training."""
    x = logits + sigma
    z = np.exp(x - x.max())
    out: np.ndarray = z / z.sum()
    return out


def root_edge(
    schedule: list[int],
    visits: np.ndarray,
    gumbel: np.ndarray,
    logits: np.ndarray,
    sigma: np.ndarray,
) -> int:
    """The root edge of the next simulation: among the edges with exactly
    ``schedule[min(sum N, len(schedule) - 1)]`` visits, the best by ``g(a) + logits(a) +
    sigma(a)``, ``g`` the root's Gumbel noise (zeros: no noise). Taking the first m simulations
    to the top edges by ``g + logits`` samples m edges without replacement from the prior
    (Gumbel-top-k); later phases keep the better half by the same score.

    Raises ``ValueError`` when no edge has the visits the schedule asks for (a search that did
    not follow its schedule)."""
    wanted = schedule[min(int(visits.sum()), len(schedule) - 1)]
    candidates = visits == wanted
    if not candidates.any():
        raise ValueError(f"no root edge has the {wanted} visits the schedule asks for")
    return int(np.argmax(np.where(candidates, gumbel + logits + sigma, -np.inf)))


def interior_edge(logits: np.ndarray, sigma: np.ndarray, visits: np.ndarray) -> int:
    """The edge a simulation takes below the root: ``argmax_a pi'(a) - N(a) / (1 + sum_b
    N(b))``, the edge whose share of the visits lags its improved policy most, so that the
    visit counts track ``pi'``. Deterministic: no noise below the root."""
    score = improved_policy(logits, sigma) - visits / (1 + int(visits.sum()))
    return int(np.argmax(score))


def root_action(
    visits: np.ndarray, gumbel: np.ndarray, logits: np.ndarray, sigma: np.ndarray
) -> int:
    """The move played: among the most visited root edges (the survivors of sequential
    halving), the best by ``g(a) + logits(a) + sigma(a)``. With ``g`` drawn at random this
    samples a good move (self-play explores); with ``g = 0`` it is the greedy one."""
    most = visits == visits.max()
    return int(np.argmax(np.where(most, gumbel + logits + sigma, -np.inf)))
