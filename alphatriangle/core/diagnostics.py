"""What tells the stages of learning apart, computed from the network's own outputs: whether the
value head explains positions it has not been trained on (``explained_variance`` over
``FreshPositions``), and how much the search still adds to the network's policy
(``policy_kl`` of the search's policy target against the network's prior at the root).

Both apply to either algorithm: ``network_outputs`` reads AlphaZero's network or MuZero's
initial inference ``f(h(o))`` on real positions, and ``episode_value_targets`` gives each
position the target its algorithm trains the value head toward (AlphaZero's of ``[train]
value_target``, ``core.targets``; MuZero's n-step target, bootstrapped from the search's root
values).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.muzero.network import MuZeroNet
from alphatriangle.core.muzero.replay import n_step_targets
from alphatriangle.core.network import AlphaTriangleNet
from alphatriangle.core.selfplay import EpisodeRecord
from alphatriangle.core.targets import (
    alphazero_value_targets,
    has_bootstrap,
    needs_bootstrap,
    with_bootstrap,
)


def explained_variance(target: np.ndarray, prediction: np.ndarray) -> float | None:
    """``1 - Var(target - prediction) / Var(target)`` over ``[N]`` pairs (population variances):
    1 for a perfect prediction, 0 for one no better than the targets' mean, negative for a
    worse one. None when the targets do not vary (fewer than two, or all equal)."""
    target = np.asarray(target, dtype=np.float64)
    prediction = np.asarray(prediction, dtype=np.float64)
    if target.ndim != 1 or prediction.shape != target.shape:
        raise ValueError(
            f"target and prediction must both be [N], got {target.shape} and {prediction.shape}"
        )
    variance = float(target.var()) if len(target) else 0.0
    if variance == 0.0:
        return None
    return 1.0 - float((target - prediction).var()) / variance


def policy_kl(target: np.ndarray, logits: np.ndarray, legal: np.ndarray) -> np.ndarray:
    """``KL(target || softmax(logits over the legal actions))`` of each row, float64 ``[T]``.

    ``target`` ``[T, A]``: a distribution over the legal actions (the search's policy target;
    rows are renormalised, so float32 rounding cannot make a KL negative); ``logits`` ``[T, A]``
    the network's policy logits; ``legal`` bool ``[T, A]``, at least one legal action a row.
    Terms where the target is 0 are 0; a target on an illegal action gives ``inf``.
    """
    p = np.asarray(target, dtype=np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    z = np.where(legal, np.asarray(logits, dtype=np.float64), -np.inf)
    top = z.max(axis=1, keepdims=True)
    log_prior = z - top - np.log(np.exp(z - top).sum(axis=1, keepdims=True))
    positive = p > 0
    with np.errstate(invalid="ignore"):
        terms = np.where(positive, p * (np.log(np.where(positive, p, 1.0)) - log_prior), 0.0)
    out: np.ndarray = terms.sum(axis=1)
    return out


def network_outputs(
    model: nn.Module, grid: np.ndarray, other: np.ndarray, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """One forward pass over ``B`` positions' features: policy logits float32 ``[B, A]`` (every
    action id; mask the illegal ones) and values float64 ``[B]`` on the scale of the value
    targets (AlphaZero: the predicted future score gain; MuZero: ``f(h(o))``'s value)."""
    dev = torch.device(device)
    grid_t, other_t = torch.from_numpy(grid).to(dev), torch.from_numpy(other).to(dev)
    with torch.inference_mode():
        if isinstance(model, MuZeroNet):
            _, logits, value = model.initial(grid_t, other_t)
        elif isinstance(model, AlphaTriangleNet):
            logits, value = model(grid_t, other_t)
            value = value * model.cfg.value_scale
        else:
            raise TypeError(f"no policy and value outputs known for {type(model).__name__}")
        return logits.float().cpu().numpy(), value.double().cpu().numpy()


def episode_value_targets(record: EpisodeRecord, cfg: AlphaTriangleConfig) -> np.ndarray:
    """The value targets float32 ``[T]`` the run's algorithm gives the episode's positions
    (the same numbers its replay buffer stores)."""
    if cfg.algorithm == "muzero":
        mz = cfg.muzero
        return n_step_targets(record.rewards, record.root_values, mz.discount, mz.td_steps)
    return alphazero_value_targets(record, cfg.train)


@dataclass(frozen=True)
class EpisodeDiagnostics:
    """The network on the ``N`` positions of finished episodes, before any training on them.

    Attributes:
        search_kl: float64 ``[N]`` KL(policy target || network prior) at each position's root.
        targets: float32 ``[N]`` value targets (``episode_value_targets``).
        predictions: float64 ``[N]`` the value head's predictions, on the targets' scale.
    """

    search_kl: np.ndarray
    targets: np.ndarray
    predictions: np.ndarray


DIAGNOSE_EVERY = 4
"""Self-play diagnoses one position in this many: with the default search, the diagnosis of
every position took 2.6% of a worker's CPU time, of one in four 1.2% (the forward pass of a
small batch costs about as much as a batch of one)."""


def diagnose_episodes(
    model: nn.Module,
    records: Sequence[EpisodeRecord],
    cfg: AlphaTriangleConfig,
    device: str | torch.device = "cpu",
    every: int = 1,
) -> EpisodeDiagnostics:
    """The network (in eval mode) on the positions of ``records``, in one forward pass: every
    ``every``-th one of them all, in game order (the first, the ``every + 1``-th, ...).

    The prior is the network's at the real position, so the KL is the search's gain over it
    in the search's own terms (PUCT: the visit distribution, with self-play's root noise;
    Gumbel: the improved policy, which starts from these logits). Self-play calls it with the
    weights it holds when the games end, which may be a publish or two newer than the
    weights that searched their first moves.
    """
    records = [r for r in records if r.length]
    if not records:
        empty = np.zeros(0, dtype=np.float64)
        return EpisodeDiagnostics(empty, empty.astype(np.float32), empty)
    picked = slice(None, None, every)
    grid = np.concatenate([r.grid for r in records])
    other = np.concatenate([r.other for r in records])
    if cfg.algorithm == "alphazero" and needs_bootstrap(cfg.train):
        # n-step targets read the value of positions that are not picked: predict them all,
        # and bootstrap records without root values from these predictions (as the learner
        # does from its own).
        logits, values = network_outputs(model, grid, other, device)
        ends = np.cumsum([r.length for r in records])[:-1]
        records = [
            r if has_bootstrap(r) else with_bootstrap(r, v)
            for r, v in zip(records, np.split(values, ends), strict=True)
        ]
        logits, values = logits[picked], values[picked]
    else:
        logits, values = network_outputs(model, grid[picked], other[picked], device)
    policy = np.concatenate([r.policy for r in records])[picked]
    legal = np.concatenate([r.valid_mask for r in records])[picked]
    targets = np.concatenate([episode_value_targets(r, cfg) for r in records])[picked]
    return EpisodeDiagnostics(policy_kl(policy, logits, legal), targets, values)


FRESH_POSITIONS = 512
"""Positions ``FreshPositions`` keeps by default: with ``DIAGNOSE_EVERY``, some forty games of
the defaults."""


class FreshPositions:
    """The newest ``capacity`` (value target, prediction) pairs of positions that were predicted
    before the learner trained on them, for the value head's ``explained_variance``.

    One finished game is too few: within a game the targets mostly fall with the moves played,
    while what the value head must learn is also how long each game will last. So the variance
    is taken over the last ``capacity`` positions, over many games.
    """

    def __init__(self, capacity: int = FRESH_POSITIONS) -> None:
        if capacity < 2:
            raise ValueError(f"FreshPositions needs a capacity of at least 2, got {capacity}")
        self.targets = np.zeros(capacity, dtype=np.float64)
        self.predictions = np.zeros(capacity, dtype=np.float64)
        self.position = 0
        self.size = 0

    def add(self, targets: np.ndarray, predictions: np.ndarray) -> None:
        """Append ``[N]`` pairs, dropping the oldest beyond the capacity."""
        capacity = len(self.targets)
        targets, predictions = np.asarray(targets)[-capacity:], np.asarray(predictions)[-capacity:]
        if targets.shape != predictions.shape:
            raise ValueError(f"{targets.shape} targets but {predictions.shape} predictions")
        slots = (self.position + np.arange(len(targets))) % capacity
        self.targets[slots], self.predictions[slots] = targets, predictions
        self.position = int((self.position + len(targets)) % capacity)
        self.size = min(capacity, self.size + len(targets))

    def explained_variance(self) -> float | None:
        """``explained_variance`` over the pairs kept (None while the targets do not vary)."""
        return explained_variance(self.targets[: self.size], self.predictions[: self.size])
