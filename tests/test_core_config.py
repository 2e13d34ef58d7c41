"""Configuration: defaults, presets, file loading and validation messages."""

import json
from pathlib import Path

import pytest

from alphatriangle.core.config import (
    AlphaTriangleConfig,
    EvalConfig,
    MCTSConfig,
    ModelConfig,
    TrainConfig,
)
from alphatriangle.core.search import SearchSettings
from alphatriangle.distributed.workers import learner_threads, worker_count
from alphatriangle.errors import ConfigError, UsageError


def test_defaults_are_valid_and_search_maps_fields() -> None:
    cfg = AlphaTriangleConfig()
    assert (cfg.mcts.variant, cfg.mcts.simulations) == ("gumbel", 32)
    search = SearchSettings.of(cfg.mcts, noise=True, muzero=cfg.muzero)
    assert search.simulations == 32
    assert search.cpuct == cfg.mcts.cpuct
    assert search.dirichlet_epsilon == cfg.mcts.dirichlet_epsilon > 0
    assert search.mcts_batch_size == cfg.mcts.mcts_batch_size
    assert search.max_depth == cfg.mcts.max_depth
    assert search.discount == cfg.muzero.discount
    assert search.noise
    assert not SearchSettings.of(cfg.mcts, noise=False).noise


def test_presets() -> None:
    assert ModelConfig.preset("small") == ModelConfig()
    large = ModelConfig.preset("large")
    assert large.channels > ModelConfig().channels
    with pytest.raises(ValueError, match="unknown model preset 'huge'"):
        ModelConfig.preset("huge")  # type: ignore[arg-type]


def test_from_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text("[train]\nbatch_size = 32\n\n[mcts]\nsimulations = 16\ncpuct = 2.5\n")
    cfg = AlphaTriangleConfig.from_file(toml)
    assert (cfg.train.batch_size, cfg.mcts.simulations, cfg.mcts.cpuct) == (32, 16, 2.5)
    assert cfg.model == ModelConfig()
    js = tmp_path / "run.json"
    js.write_text(cfg.model_dump_json())
    assert AlphaTriangleConfig.from_file(js) == cfg


def test_unknown_field_is_named_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"model": {"chanels": 8}}))
    with pytest.raises(ConfigError, match=r"bad\.json") as info:
        AlphaTriangleConfig.from_file(path)
    assert "model.chanels: unknown field" in str(info.value)


def test_out_of_range_values_are_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[train]\nbatch_size = 0\n[mcts]\ndirichlet_epsilon = 1.5\n")
    with pytest.raises(ConfigError, match=r"bad\.toml") as info:
        AlphaTriangleConfig.from_file(path)
    message = str(info.value)
    assert "train.batch_size: Input should be greater than or equal to 1" in message
    assert "mcts.dirichlet_epsilon: Input should be less than or equal to 1" in message


def test_cross_field_check_and_bad_syntax(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"min_buffer_size .* exceeds buffer_capacity"):
        AlphaTriangleConfig.from_dict({"train": {"buffer_capacity": 10, "min_buffer_size": 20}})
    path = tmp_path / "broken.toml"
    path.write_text("[train\n")
    with pytest.raises(ConfigError, match=r"broken\.toml: invalid TOML"):
        AlphaTriangleConfig.from_file(path)
    with pytest.raises(ConfigError, match=r"unsupported config format '\.yaml'"):
        AlphaTriangleConfig.from_file(tmp_path / "x.yaml")


def test_submodels_forbid_extra_fields() -> None:
    for model in (ModelConfig, MCTSConfig, TrainConfig):
        with pytest.raises(ValueError, match="extra"):
            model.model_validate({"not_a_field": 1})


def test_worker_count_fills_the_cpus_next_to_learner_and_eval_and_refuses_more_than_the_cluster() -> (
    None
):
    # rho = 4 * 70 / 1400 = 0.2 (CPU learner); epsilon = 8 * 60 * 4 / (100 * 128) = 0.15.
    tc, ec = TrainConfig(), EvalConfig()
    assert [worker_count(tc, cpus=c, eval_cfg=ec) for c in (1, 2, 8, 16)] == [1, 2, 6, 12]
    assert [worker_count(tc, cpus=c) for c in (2, 8, 16)] == [2, 7, 14]  # ceil(c / 1.2)
    assert worker_count(tc, cpus=16, gpu_learner=True) == 16
    assert worker_count(tc, cpus=16, eval_cfg=EvalConfig(every_steps=0)) == 14
    slow_learner = TrainConfig(replay_ratio=20.0)  # rho = 1: the learner needs a core per worker
    assert worker_count(slow_learner, cpus=8) == 4
    # 8 simulations a move: a core plays 4500 / 8 moves/s, rho = 4 * 562.5 / 1400 = 1.607.
    assert [worker_count(tc, cpus=c, eval_cfg=ec, simulations=8) for c in (2, 16)] == [1, 6]
    # A MuZero sample unrolls 5 steps: 6 times the learner's work, rho = 1.2.
    assert [worker_count(tc, cpus=c, eval_cfg=ec, sample_cost=6) for c in (2, 16)] == [1, 7]
    assert worker_count(TrainConfig(num_workers=3), cpus=3) == 3
    with pytest.raises(UsageError, match=r"the Ray cluster has 3 CPUs .* use at most 3"):
        worker_count(TrainConfig(num_workers=4), cpus=3)


def test_the_learner_takes_the_cores_the_workers_leave_free() -> None:
    # PyTorch's default (a thread per core) spins on cores the workers hold: one thread per
    # free core, at least one; an explicit setting wins.
    assert learner_threads(TrainConfig(), node_cpus=2, workers=2) == 1
    assert learner_threads(TrainConfig(), node_cpus=16, workers=12) == 4
    assert learner_threads(TrainConfig(), node_cpus=32, workers=256) == 1
    assert learner_threads(TrainConfig(learner_threads=3), node_cpus=2, workers=2) == 3
    with pytest.raises(ValueError, match="learner_threads"):
        TrainConfig(learner_threads=0)
