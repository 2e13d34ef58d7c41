"""The learning levers of ``[train]`` and ``[mcts]``: symmetry augmentation in the learner,
value targets and the simulation schedule, with exact values."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from alphatriangle import metric_names as m
from alphatriangle.core.config import AlphaTriangleConfig, MCTSConfig, ModelConfig
from alphatriangle.core.diagnostics import diagnose_episodes, episode_value_targets, network_outputs
from alphatriangle.core.learner import Learner
from alphatriangle.core.search import SearchSettings, TreeSearcher, UniformEvaluator, tree_searcher
from alphatriangle.core.selfplay import EpisodeRecord, SelfPlayGames
from alphatriangle.core.symmetry import augment_batch, choose_symmetries, symmetry_tables
from alphatriangle.core.targets import alphazero_value_targets, discounted_returns
from alphatriangle.distributed.eval_actor import evaluation_search
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
        metrics = augmenting.step(batch)
        assert metrics[m.LEARN_AUGMENTED] == np.mean(chosen != 0)
        assert m.LEARN_AUGMENTED not in plain.step(augment_batch(batch, chosen, tables))
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


REWARDS = [1.0, 0.0, 2.0, 5.0, 0.5]
ROOT_VALUES = [10.0, 8.0, 6.0, 4.0, 1.0]
# By hand, gamma = 0.5. Monte Carlo: the sums of the rewards to the end.
MONTE_CARLO = [8.5, 7.5, 7.5, 5.5, 0.5]
# n = 2: two rewards, then 0.25 x the root value two moves on (none from t = 3: the game ends).
N_STEP = [1 + 0 + 0.25 * 6, 0 + 1 + 0.25 * 4, 2 + 2.5 + 0.25 * 1, 5 + 0.25, 0.5]
# Discounted to the end: 0.5, 5 + 0.25, 2 + 2.625, 0 + 2.3125, 1 + 1.15625.
DISCOUNTED = [2.15625, 2.3125, 4.625, 5.25, 0.5]


def hand_made(root_values: list[float] | None = None) -> EpisodeRecord:
    """A real record cut to five positions, with the rewards (and root values) above."""
    [record] = uniform_games([9])
    assert record.length >= 5
    return dataclasses.replace(
        record,
        grid=record.grid[:5],
        other=record.other[:5],
        policy=record.policy[:5],
        valid_mask=record.valid_mask[:5],
        rewards=np.asarray(REWARDS, np.float32),
        length=5,
        root_values=np.asarray(root_values or [], np.float32),
        weight_versions=record.weight_versions[:5],
    )


@pytest.mark.parametrize(
    ("train", "expected"),
    [
        ({"value_target": "monte_carlo"}, MONTE_CARLO),
        ({"value_n_steps": 2, "value_discount": 0.5}, N_STEP),  # n-step is the default
        ({"value_target": "discounted", "value_discount": 0.5}, DISCOUNTED),
    ],
)
def test_each_value_target_by_hand(train: dict[str, object], expected: list[float]) -> None:
    cfg = config(**train)
    record = hand_made(ROOT_VALUES)
    np.testing.assert_array_equal(alphazero_value_targets(record, cfg.train), expected)
    # The learner's buffer stores the same numbers, and the diagnostics compare against them.
    learner = Learner(cfg)
    learner.add_episode(record)
    np.testing.assert_array_equal(learner.buffer.value_target[:5], expected)
    np.testing.assert_array_equal(episode_value_targets(record, cfg), expected)


def test_discounting_by_one_is_the_monte_carlo_return() -> None:
    np.testing.assert_array_equal(discounted_returns(np.asarray(REWARDS), 1.0), MONTE_CARLO)


def test_n_step_without_root_values_bootstraps_from_the_learners_network() -> None:
    cfg = config(value_target="n_step", value_n_steps=2, value_discount=0.5)
    learner = Learner(cfg)
    record = hand_made()
    _, v = network_outputs(learner.model, record.grid, record.other)
    r = REWARDS
    by_hand = [
        r[0] + 0.5 * r[1] + 0.25 * v[2],
        r[1] + 0.5 * r[2] + 0.25 * v[3],
        r[2] + 0.5 * r[3] + 0.25 * v[4],
        r[3] + 0.5 * r[4],
        r[4],
    ]
    learner.add_episode(record)
    np.testing.assert_allclose(learner.buffer.value_target[:5], by_hand, rtol=1e-6)
    # Self-play's diagnosis bootstraps from its network the same way, on every position even
    # when it diagnoses one in two.
    diagnosis = diagnose_episodes(learner.model, [record], cfg, every=2)
    np.testing.assert_allclose(diagnosis.targets, by_hand[::2], rtol=1e-6)
    np.testing.assert_allclose(diagnosis.predictions, v[::2], rtol=1e-6)
    with pytest.raises(ValueError, match="need a value of every position"):
        alphazero_value_targets(record, cfg.train)


def test_value_target_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="value_discount 1 is 'monte_carlo'"):
        AlphaTriangleConfig.from_dict({"train": {"value_target": "discounted"}})
    with pytest.raises(ConfigError, match=r"train\.value_target: Input should be"):
        AlphaTriangleConfig.from_dict({"train": {"value_target": "td"}})
    with pytest.raises(ConfigError, match=r"train\.value_n_steps: Input should be greater"):
        AlphaTriangleConfig.from_dict({"train": {"value_n_steps": 0}})
    with pytest.raises(ConfigError, match=r"train\.value_discount: Input should be less"):
        AlphaTriangleConfig.from_dict({"train": {"value_discount": 1.5}})
    with pytest.raises(ConfigError, match="value_target applies to AlphaZero only"):
        AlphaTriangleConfig.from_dict(
            {"algorithm": "muzero", "train": {"value_target": "monte_carlo"}}
        )


def test_the_simulation_schedule_by_hand() -> None:
    grow = MCTSConfig(simulations=8, simulations_final=32, simulations_ramp_steps=100)
    # 8 + floor(24 * step / 100), from step 0 to 100, then 32.
    steps = [-1, 0, 1, 4, 5, 50, 99, 100, 1_000]
    assert [grow.simulations_at(s) for s in steps] == [8, 8, 8, 8, 9, 20, 31, 32, 32]
    shrink = MCTSConfig(simulations=32, simulations_final=8, simulations_ramp_steps=3)
    assert [shrink.simulations_at(s) for s in range(5)] == [32, 24, 16, 8, 8]
    fixed = MCTSConfig(simulations=32)
    assert {fixed.simulations_at(s) for s in (0, 10**6)} == {32}
    # The schedule is self-play's: a searcher's settings hold one count.
    assert SearchSettings.of(grow, noise=True).simulations == 8
    with pytest.raises(ConfigError, match=r"mcts\.simulations_final: Input should be greater"):
        AlphaTriangleConfig.from_dict({"mcts": {"simulations_final": 0}})
    with pytest.raises(ConfigError, match=r"mcts\.simulations_ramp_steps: Input should be"):
        AlphaTriangleConfig.from_dict({"mcts": {"simulations_ramp_steps": 0}})


def test_the_players_count_by_hand() -> None:
    # 128 by default; never fewer than self-play's count at the checkpoint's step.
    assert [MCTSConfig().play_simulations_at(s) for s in (0, 10**6)] == [128, 128]
    grow = MCTSConfig(simulations=32, simulations_final=256, simulations_ramp_steps=100)
    steps = [0, 40, 43, 100, 1_000]
    assert [grow.play_simulations_at(s) for s in steps] == [128, 128, 128, 256, 256]
    assert grow.simulations_at(43) == 128  # 32 + floor(224 * 43 / 100) = 128
    own = MCTSConfig(
        simulations=8, simulations_final=12, simulations_ramp_steps=4, play_simulations=1
    )
    assert [own.play_simulations_at(s) for s in range(5)] == [8, 9, 10, 11, 12]
    assert MCTSConfig(simulations=32, play_simulations=40).play_simulations_at(0) == 40
    # The player's count is no searcher's setting: each searcher is built with one count.
    assert not hasattr(SearchSettings.of(grow, noise=False), "play_simulations")
    with pytest.raises(ConfigError, match=r"mcts\.play_simulations: Input should be greater"):
        AlphaTriangleConfig.from_dict({"mcts": {"play_simulations": 0}})


def test_the_periodic_evaluation_searches_with_the_starting_count() -> None:
    # Self-play grows to 128 here; the periodic evaluation stays at 32 unless [eval] says.
    grow = {"simulations_final": 128, "simulations_ramp_steps": 8000}
    assert evaluation_search(AlphaTriangleConfig.from_dict({"mcts": grow})).simulations == 32
    cfg = AlphaTriangleConfig.from_dict({"mcts": grow, "eval": {"simulations": 64}})
    assert evaluation_search(cfg).simulations == 64
    assert evaluation_search(cfg).variant == cfg.mcts.variant


def test_games_searched_by_a_new_searcher_count_each_moves_simulations() -> None:
    def uniform(simulations: int) -> TreeSearcher:
        mcts = MCTSConfig(simulations=simulations, variant="puct")
        return tree_searcher(UniformEvaluator(), SearchSettings.of(mcts, noise=True))

    games = SelfPlayGames(uniform(4), [5, 6], 2)
    for _ in range(3):
        assert not games.step()
    games.set_searcher(uniform(6))
    records = games.step()
    while games.running:
        records += games.step()
    assert len(records) == 2
    for record in records:
        assert record.simulations == 4 * 3 + 6 * (record.length - 3)
    # Alone, with one searcher throughout, the same games take their own count per move.
    [alone] = SelfPlayGames(uniform(6), [5], 1).play()
    assert alone.simulations == 6 * alone.length


LEARNING_BENCH = Path(__file__).parents[1] / "bench" / "learning.py"
TINY_TOML = """
[model]
channels = 4
num_blocks = 0
extra_hidden = 8
policy_hidden = 4
value_hidden = 8
[mcts]
simulations = 4
[train]
batch_size = 16
min_buffer_size = 16
augment_symmetries = ["mirror0", "rot180"]
value_target = "n_step"
"""


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    command = [sys.executable, str(LEARNING_BENCH), "--config", str(config), "--games", "1"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=600)


def test_the_learning_bench_stops_at_a_step_or_position_budget(tmp_path: Path) -> None:
    steps = _bench(tmp_path, "--steps", "3")
    assert steps.returncode in (0, 1), steps.stdout + steps.stderr  # 1: did not beat MCTS-128
    trained = re.search(r"trained: (\d+) steps, (\d+) positions", steps.stdout)
    assert trained is not None, steps.stdout
    assert int(trained[1]) == 3
    positions = _bench(tmp_path, "--positions", "40")
    trained = re.search(r"trained: (\d+) steps, (\d+) positions", positions.stdout)
    assert trained is not None, positions.stdout + positions.stderr
    assert int(trained[2]) >= 40
    refused = _bench(tmp_path, "--steps", "0")
    assert refused.returncode == 2
    assert "argument --steps: '0' is not a positive whole number" in refused.stderr


CONFIG_FIELDS = {
    "levers_symmetries.toml": {"train.augment_symmetries"},
    "levers_value_monte_carlo.toml": {"train.value_target"},
    "levers_value_discounted.toml": {"train.value_target", "train.value_discount"},
    "levers_simulations_growing.toml": {"mcts.simulations_final", "mcts.simulations_ramp_steps"},
    "levers_network_wider.toml": {"model.channels", "model.num_blocks"},
    "muzero.toml": {"algorithm"},
    "muzero_consistency.toml": {"algorithm", "muzero.consistency_weight"},
    "stochastic_muzero.toml": {"algorithm", "muzero.stochastic"},
}


def test_each_bench_config_changes_its_settings_and_nothing_else() -> None:
    configs = Path(__file__).parents[1] / "bench" / "configs"
    assert {p.name for p in configs.glob("*.toml")} == set(CONFIG_FIELDS)
    defaults = _flat(AlphaTriangleConfig().model_dump())
    # Every lever is off by default, but n-step value targets, which won (README).
    assert defaults["train.augment_symmetries"] == []
    assert defaults["train.value_target"] == "n_step"
    assert defaults["mcts.simulations_final"] is None
    for name, fields in CONFIG_FIELDS.items():
        changed = _flat(AlphaTriangleConfig.from_file(configs / name).model_dump())
        assert {key for key in changed if changed[key] != defaults[key]} == fields, name


def _flat(data: dict[str, object], prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_value_predictability_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two games of 3 and 2 moves; only the globals (fill, move number / 500, empty slots) count.
    fill = [0.0, 0.5, 0.99, 0.0, 0.5]
    move = [0, 1, 2, 0, 1]
    other = np.array([[f, m / 500, 0.0] for f, m in zip(fill, move, strict=True)], np.float16)
    snapshot = tmp_path / "buffer.npz"
    np.savez(
        snapshot,
        size=5,
        capacity=8,
        position=5,
        other=other,
        value_target=np.array([4.0, 2.0, 0.0, 3.0, 1.0], np.float32),
    )
    script = Path(__file__).parents[1] / "bench" / "value_predictability.py"
    done = subprocess.run(
        [sys.executable, str(script), str(snapshot)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Bin means 3.5, 1.5 and 0: residuals ±0.5 on four positions, variance 0.2 of 2.
    assert "5 positions of 2 games" in done.stdout
    assert "R² of the score still to come by fill bin: 0.900" in done.stdout
    missing = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "none.npz")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2
    assert "no file" in missing.stderr
    # Once the ring has wrapped, game order starts at the write position, and the game the
    # ring cut is left out.
    monkeypatch.syspath_prepend(str(script.parent))
    from value_predictability import games_in_order

    # Game A (moves 0-3) went to slots 0-3, then game B (moves 0-2) to slots 4, 0 and 1.
    ring = np.array([[0.0, m / 500, 0.0] for m in (1, 2, 2, 3, 0)], np.float32)
    order, game = games_in_order(ring, position=2, full=True)
    np.testing.assert_array_equal(order, [2, 3, 4, 0, 1])
    np.testing.assert_array_equal(game, [-1, -1, 1, 1, 1])
