"""Network evaluators implementing the ``trimcts`` AlphaZero interface."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import torch
from trianglengin import GameState

from alphatriangle.features import extract_batch, valid_mask_from_grid
from alphatriangle.model import AlphaTriangleNet

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
