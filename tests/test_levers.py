"""The learning levers of ``[train]`` and ``[mcts]``: symmetry augmentation in the learner,
value targets and the simulation schedule, with exact values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alphatriangle.core.config import AlphaTriangleConfig, MCTSConfig, ModelConfig
from alphatriangle.core.learner import Learner
from alphatriangle.core.search import SearchSettings, UniformEvaluator, tree_searcher
from alphatriangle.core.selfplay import EpisodeRecord, SelfPlayGames
from alphatriangle.core.symmetry import augment_batch, choose_symmetries, symmetry_tables
from alphatriangle.errors import ConfigError

TINY = ModelConfig(channels=4, num_blocks=0, extra_hidden=8, policy_hidden=4, value_hidden=8)


def uniform_games(seeds: list[int]) -> list[EpisodeRecord]:
    """Real self-play records of a cheap uniform-prior search."""
    mcts = MCTSConfig(simulations=4, variant="puct")
    searcher = tree_searcher(UniformEvaluator(), SearchSettings.of(mcts, noise=True))
    return SelfPlayGames(searcher, seeds, len(seeds)).play()


def config(**train: object) -> AlphaTriangleConfig:
    return AlphaTriangleConfig.model_validate(
        {
            "model": TINY.model_dump(),
            "train": {"batch_size": 16, "min_buffer_size": 1, "buffer_capacity": 400, **train},
        }
    )


def test_the_learner_trains_on_the_batch_turned_by_seeded_symmetries() -> None:
    names = ["mirror0", "rot120", "mirror180"]
    records = uniform_games([3, 4])
    augmenting = Learner(config(augment_symmetries=names, seed=5))
    plain = Learner(config(seed=5))
    for record in records:
        augmenting.add_episode(record)
        plain.add_episode(record)
    tables = symmetry_tables()
    for step in range(3):
        batch = augmenting.buffer.sample(16)
        rng = np.random.default_rng([5, step])
        chosen = choose_symmetries(batch.other, tables.index(names), tables, rng)
        assert step > 0 or (chosen != 0).any()
        augmenting.step(batch)
        plain.step(augment_batch(batch, chosen, tables))
        for (name, a), b in zip(
            augmenting.model.state_dict().items(), plain.model.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), name


def test_augmentation_is_refused_for_muzero_and_unknown_names() -> None:
    with pytest.raises(ConfigError, match="augment_symmetries applies to AlphaZero only"):
        AlphaTriangleConfig.from_dict(
            {"algorithm": "muzero", "train": {"augment_symmetries": ["mirror0"]}}
        )
    with pytest.raises(ConfigError, match=r"train\.augment_symmetries\.0: Input should be"):
        AlphaTriangleConfig.from_dict({"train": {"augment_symmetries": ["flip"]}})
