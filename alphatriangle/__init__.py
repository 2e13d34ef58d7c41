"""AlphaTriangle: AlphaZero-style self-play training for the trianglengin puzzle."""

import os
from importlib import import_module
from typing import TYPE_CHECKING, Any

# trianglengin imports pygame, which prints a banner on import; keep CLI output clean.
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

# The public API, by defining module. Imported on first use so that `import alphatriangle`
# (and with it the CLI's --help) does not pay for importing torch.
_EXPORTS = {
    "AlphaTriangleConfig": "core.config",
    "MCTSConfig": "core.config",
    "ModelConfig": "core.config",
    "TrainConfig": "core.config",
    "FeatureSpec": "core.features",
    "extract_batch": "core.features",
    "extract_features": "core.features",
    "feature_spec": "core.features",
    "valid_mask_from_grid": "core.features",
    "AlphaTriangleNet": "core.network",
    "Evaluator": "core.search",
    "NetworkEvaluator": "core.search",
    "UniformEvaluator": "core.search",
    "SearchSettings": "core.search",
    "choose_action": "core.search",
    "tree_searcher": "core.search",
    "visit_distribution": "core.search",
    "EpisodeRecord": "core.selfplay",
    "play_episode": "core.selfplay",
    "value_targets": "core.buffer",
    "Batch": "core.buffer",
    "ReplayBuffer": "core.buffer",
    "SumTree": "core.buffer",
    "Counters": "core.learner",
    "Learner": "core.learner",
    "TrainStepResult": "core.optimization",
    "train_locally": "core.local",
    "Summary": "core.players",
    "evaluate": "core.players",
    "summarize": "core.players",
    "make_optimizer": "core.optimization",
    "make_scheduler": "core.optimization",
    "train_step": "core.training",
    "GameResult": "core.players",
    "GreedyPlayer": "core.players",
    "MCTSPlayer": "core.players",
    "Player": "core.players",
    "RandomPlayer": "core.players",
    "network_player": "core.players",
    "play_game": "core.players",
    "play_games": "core.players",
    "uniform_mcts_player": "core.players",
}

__all__ = [
    "AlphaTriangleConfig",
    "AlphaTriangleNet",
    "Batch",
    "Counters",
    "EpisodeRecord",
    "Evaluator",
    "FeatureSpec",
    "GameResult",
    "GreedyPlayer",
    "Learner",
    "MCTSConfig",
    "MCTSPlayer",
    "ModelConfig",
    "NetworkEvaluator",
    "Player",
    "RandomPlayer",
    "ReplayBuffer",
    "SearchSettings",
    "SumTree",
    "Summary",
    "TrainConfig",
    "TrainStepResult",
    "UniformEvaluator",
    "choose_action",
    "evaluate",
    "extract_batch",
    "extract_features",
    "feature_spec",
    "make_optimizer",
    "make_scheduler",
    "network_player",
    "play_episode",
    "play_game",
    "play_games",
    "summarize",
    "train_locally",
    "train_step",
    "tree_searcher",
    "uniform_mcts_player",
    "valid_mask_from_grid",
    "value_targets",
    "visit_distribution",
]

if TYPE_CHECKING:
    from alphatriangle.core.buffer import Batch, ReplayBuffer, SumTree, value_targets
    from alphatriangle.core.config import AlphaTriangleConfig, MCTSConfig, ModelConfig, TrainConfig
    from alphatriangle.core.features import (
        FeatureSpec,
        extract_batch,
        extract_features,
        feature_spec,
        valid_mask_from_grid,
    )
    from alphatriangle.core.learner import Counters, Learner
    from alphatriangle.core.local import train_locally
    from alphatriangle.core.network import AlphaTriangleNet
    from alphatriangle.core.optimization import TrainStepResult, make_optimizer, make_scheduler
    from alphatriangle.core.players import (
        GameResult,
        GreedyPlayer,
        MCTSPlayer,
        Player,
        RandomPlayer,
        Summary,
        evaluate,
        network_player,
        play_game,
        play_games,
        summarize,
        uniform_mcts_player,
    )
    from alphatriangle.core.search import (
        Evaluator,
        NetworkEvaluator,
        SearchSettings,
        UniformEvaluator,
        choose_action,
        tree_searcher,
        visit_distribution,
    )
    from alphatriangle.core.selfplay import EpisodeRecord, play_episode
    from alphatriangle.core.training import train_step


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'alphatriangle' has no attribute {name!r}")
    value = getattr(import_module(f"alphatriangle.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
