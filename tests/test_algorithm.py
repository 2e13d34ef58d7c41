"""What differs between the algorithms, as ``core.algorithm`` reports it: the learner's cost of
a sample, the replay buffer's bytes, the settings that shape the network."""

from __future__ import annotations

import os
from typing import Any

import pytest

from alphatriangle.core import algorithm
from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.errors import ConfigError


def _cfg(algo: str, **sections: dict[str, Any]) -> AlphaTriangleConfig:
    return AlphaTriangleConfig.from_dict({"algorithm": algo, **sections}, "test")


def test_a_training_sample_costs_one_network_pass_and_a_muzero_one_a_pass_per_unroll_step() -> None:
    assert algorithm.learner_sample_cost(_cfg("alphazero")) == 1.0
    assert algorithm.learner_sample_cost(_cfg("muzero")) == 1.0 + 5  # unroll_steps = 5
    assert algorithm.learner_sample_cost(_cfg("muzero", muzero={"unroll_steps": 2})) == 3.0


@pytest.mark.parametrize("prioritized", [False, True])
def test_bytes_per_position_are_what_the_run_s_buffer_allocates(prioritized: bool) -> None:
    # float16 grid (9 x 8 x 15), features (45) and policy (360), bool mask (360), float32 target,
    # and the int32 weight version and times-sampled count of the slot.
    alphazero = 2 * (9 * 8 * 15 + 45 + 360) + 360 + 4 + 4 + 4
    # MuZero's also keep the move (int16), its reward (float32) and the moves left (int32).
    muzero = alphazero + 2 + 4 + 4
    tree = 32 if prioritized else 0
    for algo, per_position in (("alphazero", alphazero), ("muzero", muzero)):
        cfg = _cfg(
            algo,
            train={"buffer_capacity": 100, "min_buffer_size": 1, "prioritized_replay": prioritized},
        )
        assert algorithm.buffer_bytes_per_position(cfg) == per_position + tree
        buffer = algorithm.new_buffer(cfg)
        rows = sum(getattr(buffer, name).nbytes for name in buffer.ROW_FIELDS + buffer.BOOKKEEPING)
        assert rows == 100 * per_position
        if buffer.tree is not None:  # 2 x 128 float64 nodes for 100 leaves: within the bound
            assert buffer.tree.tree.nbytes == 2 * 128 * 8 <= 100 * tree


def test_a_buffer_larger_than_the_machine_s_memory_is_refused_for_each_algorithm() -> None:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    fits = memory // algorithm.buffer_bytes_per_position(_cfg("alphazero"))
    algorithm.check_buffer_fits(_cfg("alphazero", train={"buffer_capacity": fits}))
    for cfg in (
        _cfg("alphazero", train={"buffer_capacity": fits + 1}),
        # The same capacity does not fit MuZero's larger positions.
        _cfg("muzero", train={"buffer_capacity": fits}),
    ):
        with pytest.raises(ConfigError, match=r"GiB of memory; lower it$"):
            algorithm.check_buffer_fits(cfg)


def test_only_the_settings_that_shape_the_weights_change_the_network() -> None:
    base = algorithm.network_settings(_cfg("alphazero"))
    same = _cfg("alphazero", mcts={"simulations": 8}, train={"learning_rate": 0.5})
    assert algorithm.network_settings(same) == base
    assert algorithm.network_settings(_cfg("alphazero", model={"channels": 16})) != base
    muzero = algorithm.network_settings(_cfg("muzero"))
    assert algorithm.network_settings(_cfg("muzero", muzero={"unroll_steps": 2})) == muzero
    assert algorithm.network_settings(_cfg("muzero", muzero={"value_support": 10})) != muzero
