"""Exact values on hand-made inputs: the loss and a gradient of one step, the footprint-pooling
policy head against a plain loop, and how visit counts become a policy and a move."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from alphatriangle.core.buffer import Batch
from alphatriangle.core.config import ModelConfig, TrainConfig
from alphatriangle.core.features import (
    FOOTPRINT_OFFSETS,
    FOOTPRINT_START,
    SLOT_FEATURES,
    feature_spec,
)
from alphatriangle.core.network import AlphaTriangleNet
from alphatriangle.core.optimization import (
    make_optimizer,
    make_scheduler,
    normalized_value_loss,
)
from alphatriangle.core.search import choose_action, visit_distribution
from alphatriangle.core.training import train_step
from alphatriangle.errors import NonFiniteLossError

SPEC = feature_spec()
TINY = ModelConfig(channels=4, num_blocks=1, extra_hidden=5, policy_hidden=3, value_hidden=6)


def _inputs(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random planes and extra features, with 0/1 footprint bits as real states have."""
    gen = torch.Generator().manual_seed(seed)
    grid = torch.rand((batch, *SPEC.grid_shape), generator=gen)
    other = torch.rand((batch, SPEC.other_dim), generator=gen)
    for slot in range(SPEC.num_slots):
        start = slot * SLOT_FEATURES + FOOTPRINT_START
        bits = torch.rand((batch, len(FOOTPRINT_OFFSETS)), generator=gen) < 0.4
        other[:, start : start + len(FOOTPRINT_OFFSETS)] = bits.float()
    return grid, other


def test_policy_head_equals_a_plain_loop_over_placements() -> None:
    torch.manual_seed(3)
    model = AlphaTriangleNet(TINY).eval()
    grid, other = _inputs(2, seed=4)
    with torch.no_grad():
        logits, _ = model(grid, other)
        emb = model.extra(other)
        trunk = torch.relu(model.stem(grid) + model.extra_to_trunk(emb)[:, :, None, None])
        maps = model.policy_in(model.blocks(trunk))  # [B, K * hid, H, W]
    hid, rows, cols = TINY.policy_hidden, SPEC.rows, SPEC.cols
    w, bias = model.policy_out.weight[0].detach(), float(model.policy_out.bias.detach())
    for b in range(2):
        for slot in range(SPEC.num_slots):
            features = other[b, slot * SLOT_FEATURES : (slot + 1) * SLOT_FEATURES]
            embed = model.slot_embed(features).detach()
            for row in range(rows):
                for col in range(cols):
                    # The logit of placing `slot` at (row, col): the cells it would cover.
                    hidden = embed.clone()
                    for k, (dr, dc) in enumerate(FOOTPRINT_OFFSETS):
                        r, c = row + dr, col + dc
                        covered = float(features[FOOTPRINT_START + k])
                        if covered and 0 <= r < rows and 0 <= c < cols:
                            hidden += maps[b, k * hid : (k + 1) * hid, r, c]
                    expected = float(w @ torch.relu(hidden)) + bias
                    action = slot * rows * cols + row * cols + col
                    assert float(logits[b, action]) == pytest.approx(expected, abs=1e-5)


def _batch() -> Batch:
    """Two positions: legal actions {0, 1} and {2}, hand-picked targets and IS weights."""
    grid, other = _inputs(2, seed=7)
    mask = np.zeros((2, SPEC.action_dim), dtype=bool)
    mask[0, [0, 1]] = True
    mask[1, 2] = True
    policy = np.zeros((2, SPEC.action_dim), dtype=np.float32)
    policy[0, [0, 1]] = [0.25, 0.75]
    policy[1, 2] = 1.0
    return Batch(
        grid=grid.numpy(),
        other=other.numpy(),
        policy=policy,
        valid_mask=mask,
        value_target=np.array([12.0, 3.0], dtype=np.float32),
        weights=np.array([1.0, 0.5], dtype=np.float32),
        indices=np.array([4, 9]),
    )


def test_train_step_loss_gradient_and_priorities_by_hand() -> None:
    torch.manual_seed(5)
    model = AlphaTriangleNet(TINY)
    batch = _batch()
    cfg = TrainConfig(value_loss_weight=0.5, grad_clip_norm=1e9, lr_warmup_steps=0)
    with torch.no_grad():
        logits, value = model(torch.from_numpy(batch.grid), torch.from_numpy(batch.other))
    l0, l1 = float(logits[0, 0]), float(logits[0, 1])
    log_z = math.log(math.exp(l0) + math.exp(l1))
    policy_loss = [-(0.25 * (l0 - log_z) + 0.75 * (l1 - log_z)), 0.0]  # one legal move: log 1
    error = [float(value[0]) - 12.0 / 10.0, float(value[1]) - 3.0 / 10.0]
    total = (1.0 * (policy_loss[0] + 0.5 * error[0] ** 2) + 0.5 * (0.5 * error[1] ** 2)) / 2
    # d total / d (bias of the value head's last layer): value is linear in it.
    bias_grad = (1.0 * 0.5 * 2 * error[0] + 0.5 * 0.5 * 2 * error[1]) / 2

    optimizer = make_optimizer(model, cfg)
    result = train_step(model, optimizer, make_scheduler(optimizer, cfg), batch, cfg)
    assert result.metrics["loss/policy"] == pytest.approx(np.mean(policy_loss), abs=1e-6)
    assert result.metrics["loss/value"] == pytest.approx(np.mean(np.square(error)), abs=1e-6)
    # Scaled targets 1.2 and 0.3: population variance 0.45² = 0.2025.
    assert result.metrics["loss/value_normalized"] == pytest.approx(
        np.mean(np.square(error)) / 0.2025, abs=1e-6
    )
    assert result.metrics["loss/total"] == pytest.approx(total, abs=1e-6)
    head = model.value[-1]
    assert isinstance(head, torch.nn.Linear)
    assert head.bias.grad is not None
    assert float(head.bias.grad) == pytest.approx(bias_grad, abs=1e-6)
    np.testing.assert_allclose(result.priorities, np.abs(error), atol=1e-6)


def test_a_non_finite_loss_is_refused_and_leaves_the_model_unchanged() -> None:
    torch.manual_seed(5)
    model = AlphaTriangleNet(TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = _batch()
    poisoned = Batch(**{**batch.__dict__, "value_target": np.array([3e38, 1.0], np.float32)})
    cfg = TrainConfig()
    optimizer = make_optimizer(model, cfg)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(loss/total=inf"):
        train_step(model, optimizer, make_scheduler(optimizer, cfg), poisoned, cfg)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert optimizer.state_dict()["state"] == {}


def test_visit_distribution_normalises_counts_over_all_actions() -> None:
    dist = visit_distribution({3: 2, 7: 6}, 10)
    expected = np.zeros(10, dtype=np.float32)
    expected[[3, 7]] = [0.25, 0.75]
    np.testing.assert_array_equal(dist, expected)
    assert dist.dtype == np.float32


def test_choose_action_argmax_ties_to_lowest_and_temperature_sharpens() -> None:
    rng = np.random.default_rng(0)
    assert choose_action(np.array([0.3, 0.35, 0.35, 0.0], np.float32), None, rng) == 1
    policy = np.array([0.2, 0.8], np.float32)
    # Temperature 0.5 squares the visit shares: p(1) = 0.64 / (0.04 + 0.64).
    draws = [choose_action(policy, 0.5, rng) for _ in range(20_000)]
    assert np.mean(draws) == pytest.approx(0.64 / 0.68, abs=0.01)
    # Temperature 1 samples the visit distribution itself.
    draws = [choose_action(policy, 1.0, rng) for _ in range(20_000)]
    assert np.mean(draws) == pytest.approx(0.8, abs=0.01)


def test_the_normalized_value_loss_is_the_error_over_the_targets_variance() -> None:
    errors = torch.tensor([1.0, -1.0, 2.0])
    # Targets 0, 2, 4: population variance 8/3; mean squared error 2.
    assert normalized_value_loss(errors, torch.tensor([0.0, 2.0, 4.0])) == {
        "loss/value_normalized": pytest.approx(2.0 / (8.0 / 3.0))
    }
    assert normalized_value_loss(errors, torch.tensor([5.0, 5.0, 5.0])) == {}
