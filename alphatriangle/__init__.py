"""AlphaTriangle: AlphaZero-style self-play training for the trianglengin puzzle."""

import os
from importlib import import_module
from typing import TYPE_CHECKING, Any

# trianglengin imports pygame, which prints a banner on import; keep CLI output clean.
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

# The public API, by defining module. Imported on first use so that `import alphatriangle`
# (and with it the CLI's --help) does not pay for importing torch.
_EXPORTS = {
    "AlphaTriangleConfig": "config",
    "MCTSConfig": "config",
    "ModelConfig": "config",
    "TrainConfig": "config",
    "FeatureSpec": "features",
    "extract_batch": "features",
    "extract_features": "features",
    "feature_spec": "features",
    "valid_mask_from_grid": "features",
    "AlphaTriangleNet": "model",
    "Evaluator": "evaluator",
    "NetworkEvaluator": "evaluator",
    "UniformEvaluator": "evaluator",
    "EpisodeRecord": "selfplay",
    "play_episode": "selfplay",
    "value_targets": "targets",
    "Batch": "buffer",
    "ReplayBuffer": "buffer",
    "SumTree": "buffer",
    "TrainStepResult": "learner",
    "make_optimizer": "learner",
    "make_scheduler": "learner",
    "train_step": "learner",
    "GameResult": "baselines",
    "GreedyPlayer": "baselines",
    "MCTSPlayer": "baselines",
    "Player": "baselines",
    "RandomPlayer": "baselines",
    "network_player": "baselines",
    "play_game": "baselines",
    "play_games": "baselines",
    "uniform_mcts_player": "baselines",
}

__all__ = [
    "AlphaTriangleConfig",
    "AlphaTriangleNet",
    "Batch",
    "EpisodeRecord",
    "Evaluator",
    "FeatureSpec",
    "GameResult",
    "GreedyPlayer",
    "MCTSConfig",
    "MCTSPlayer",
    "ModelConfig",
    "NetworkEvaluator",
    "Player",
    "RandomPlayer",
    "ReplayBuffer",
    "SumTree",
    "TrainConfig",
    "TrainStepResult",
    "UniformEvaluator",
    "extract_batch",
    "extract_features",
    "feature_spec",
    "make_optimizer",
    "make_scheduler",
    "network_player",
    "play_episode",
    "play_game",
    "play_games",
    "train_step",
    "uniform_mcts_player",
    "valid_mask_from_grid",
    "value_targets",
]

if TYPE_CHECKING:
    from alphatriangle.baselines import (
        GameResult,
        GreedyPlayer,
        MCTSPlayer,
        Player,
        RandomPlayer,
        network_player,
        play_game,
        play_games,
        uniform_mcts_player,
    )
    from alphatriangle.buffer import Batch, ReplayBuffer, SumTree
    from alphatriangle.config import AlphaTriangleConfig, MCTSConfig, ModelConfig, TrainConfig
    from alphatriangle.evaluator import Evaluator, NetworkEvaluator, UniformEvaluator
    from alphatriangle.features import (
        FeatureSpec,
        extract_batch,
        extract_features,
        feature_spec,
        valid_mask_from_grid,
    )
    from alphatriangle.learner import TrainStepResult, make_optimizer, make_scheduler, train_step
    from alphatriangle.model import AlphaTriangleNet
    from alphatriangle.selfplay import EpisodeRecord, play_episode
    from alphatriangle.targets import value_targets


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'alphatriangle' has no attribute {name!r}")
    value = getattr(import_module(f"alphatriangle.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
