"""Network evaluators implementing the ``trimcts`` AlphaZero interface."""

from __future__ import annotations

from trianglengin import GameState

PolicyValue = tuple[dict[int, float], float]


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
