"""The search: ``trimcts`` MCTS, the leaf evaluators it calls, and the choice of a move.

- ``search(state, evaluator, mcts_cfg, ...)`` runs one search from ``state``;
- ``UniformEvaluator`` and ``NetworkEvaluator`` value its leaves (the ``trimcts`` interface);
- ``visit_distribution`` and ``choose_action`` turn its visit counts into a policy and a move.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import torch
from trianglengin import GameState
from trimcts import SearchConfiguration, run_mcts

from alphatriangle.core.config import MCTSConfig
from alphatriangle.core.features import extract_batch, valid_mask_from_grid
from alphatriangle.core.network import AlphaTriangleNet

PolicyValue = tuple[dict[int, float], float]
"""A prior over the state's legal actions, and the state's value on the final-score scale."""


class Evaluator(Protocol):
    """What ``trimcts.run_mcts`` calls to evaluate leaves."""

    def evaluate_state(self, state: GameState) -> PolicyValue: ...

    def evaluate_batch(self, states: list[GameState]) -> list[PolicyValue]: ...


class UniformEvaluator:
    """Uniform prior over the legal moves; value = the score already banked.

    The value is on the scale of ``trimcts``' terminal outcome (the final game score), so a
    search with this evaluator does not prefer ending the game over continuing it.
    """

    def evaluate_state(self, state: GameState) -> PolicyValue:
        actions = state.valid_actions()
        prior = 1.0 / len(actions) if actions else 0.0
        return dict.fromkeys(actions, prior), state.game_score()

    def evaluate_batch(self, states: list[GameState]) -> list[PolicyValue]:
        return [self.evaluate_state(s) for s in states]


class NetworkEvaluator:
    """Priors and values from an ``AlphaTriangleNet``, one forward pass per batch of leaves.

    The prior is the softmax of the policy logits over the state's legal actions only. The value
    is ``game_score() + max(0, predicted future gain)``: ``trimcts`` backs up a leaf's value
    unchanged and scores a terminal leaf by its final ``game_score()``, so a non-terminal leaf
    must be valued on the same "final score" scale or the search would prefer ending the game.
    """

    def __init__(self, model: AlphaTriangleNet, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.value_scale = model.cfg.value_scale
        self.evaluations = 0
        """States evaluated so far (for throughput metrics)."""

    def load_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Replace the network's weights (e.g. ones published by the learner)."""
        self.model.load_state_dict(state_dict)
        self.model.eval()

    def evaluate_state(self, state: GameState) -> PolicyValue:
        return self.evaluate_batch([state])[0]

    def evaluate_batch(self, states: Sequence[GameState]) -> list[PolicyValue]:
        """One forward pass over the ``B`` states; per state, (prior over its legal actions, value)."""
        grid, other = extract_batch(states)
        mask = valid_mask_from_grid(grid)  # [B, A]
        with torch.inference_mode():
            logits, value = self.model(
                torch.from_numpy(grid).to(self.device), torch.from_numpy(other).to(self.device)
            )
            mask_t = torch.from_numpy(mask).to(self.device)
            logits = logits.masked_fill(~mask_t, -torch.inf)
            # A terminal state has no legal action; keep its row finite (its dict is empty anyway).
            logits = logits.masked_fill(~mask_t.any(dim=1, keepdim=True), 0.0)
            probs = torch.softmax(logits, dim=1).cpu().numpy()
            gain = (value.clamp(min=0.0) * self.value_scale).cpu().numpy()
        self.evaluations += len(states)
        results: list[PolicyValue] = []
        for i, state in enumerate(states):
            actions = np.flatnonzero(mask[i])
            policy = dict(zip(actions.tolist(), probs[i, actions].tolist(), strict=True))
            results.append((policy, state.game_score() + float(gain[i])))
        return results


def search_configuration(mcts_cfg: MCTSConfig, noise: bool) -> SearchConfiguration:
    """The ``trimcts`` configuration of ``mcts_cfg``; root Dirichlet noise only when ``noise``."""
    return SearchConfiguration(
        max_simulations=mcts_cfg.simulations,
        max_depth=mcts_cfg.max_depth,
        cpuct=mcts_cfg.cpuct,
        dirichlet_alpha=mcts_cfg.dirichlet_alpha,
        dirichlet_epsilon=mcts_cfg.dirichlet_epsilon if noise else 0.0,
        discount=1.0,
        mcts_batch_size=mcts_cfg.mcts_batch_size,
    )


def search(
    state: GameState,
    evaluator: Evaluator,
    mcts_cfg: MCTSConfig,
    *,
    noise: bool,
    previous: object | None = None,
    last_action: int = -1,
) -> tuple[dict[int, int], object | None, float]:
    """One ``run_mcts`` call: ``(visits over legal root actions, tree handle, mean depth)``.

    Raises ``RuntimeError`` when the search returns nothing for a non-terminal state
    (``trimcts`` reports C++ errors only by returning empty visits).
    """
    visits, handle, depth = run_mcts(
        state,
        evaluator,
        search_configuration(mcts_cfg, noise),
        previous,
        last_action if previous is not None else -1,
    )
    if not visits or sum(visits.values()) == 0:
        raise RuntimeError(
            f"MCTS returned no visits for a non-terminal state (step {state.current_step}, "
            f"{len(state.valid_actions())} legal moves); trimcts hides C++ errors this way - "
            "see its log output above, and check the evaluator returns (policy, value) pairs"
        )
    return visits, handle, depth


def visit_distribution(visits: dict[int, int], action_dim: int) -> np.ndarray:
    """Normalised visit counts as float32 ``[A]``."""
    counts = np.zeros(action_dim, dtype=np.float64)
    counts[np.fromiter(visits.keys(), dtype=np.int64)] = np.fromiter(
        visits.values(), dtype=np.float64
    )
    dist: np.ndarray = (counts / counts.sum()).astype(np.float32)
    return dist


def choose_action(policy: np.ndarray, temperature: float | None, rng: np.random.Generator) -> int:
    """Argmax of ``policy [A]`` (ties to the lowest id) when ``temperature`` is None, else a
    sample from ``policy ** (1 / temperature)``."""
    if temperature is None:
        return int(np.argmax(policy))
    weights = policy.astype(np.float64) ** (1.0 / temperature)
    return int(rng.choice(policy.shape[0], p=weights / weights.sum()))
