"""One gradient step of the policy/value network, and its optimizer and LR schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR

from alphatriangle.buffer import Batch
from alphatriangle.config import TrainConfig
from alphatriangle.model import AlphaTriangleNet

COSINE_FLOOR = 0.1
"""The cosine schedule decays to this fraction of the peak learning rate at ``max_steps``."""


@dataclass(frozen=True)
class TrainStepResult:
    """What one ``train_step`` produced.

    Attributes:
        metrics: namespaced scalars (``loss/*``, ``train/*``) to log.
        priorities: float32 ``[B]`` absolute value errors (in ``value_scale`` units) of the batch,
            for ``ReplayBuffer.update_priorities`` when replay is prioritized.
    """

    metrics: dict[str, float]
    priorities: np.ndarray


def make_optimizer(model: torch.nn.Module, train_cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW at the peak learning rate (the scheduler scales it)."""
    return torch.optim.AdamW(
        model.parameters(), lr=train_cfg.learning_rate, weight_decay=train_cfg.weight_decay
    )


def make_scheduler(optimizer: torch.optim.Optimizer, train_cfg: TrainConfig) -> LambdaLR:
    """Linear warm-up over ``lr_warmup_steps``, then constant or cosine to 10% at ``max_steps``."""
    warmup, total, shape = train_cfg.lr_warmup_steps, train_cfg.max_steps, train_cfg.lr_schedule

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if shape == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return COSINE_FLOOR + (1.0 - COSINE_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def train_step(
    model: AlphaTriangleNet,
    optimizer: torch.optim.Optimizer,
    scheduler: LambdaLR,
    batch: Batch,
    cfg: TrainConfig,
    device: str | torch.device = "cpu",
) -> TrainStepResult:
    """Forward, losses, backward, gradient clipping, optimizer and scheduler step.

    Policy loss: cross-entropy between the MCTS visit distribution and the softmax of the
    logits restricted to legal actions. Value loss: squared error of the predicted future gain
    against ``value_target / value_scale``. Each sample's loss is multiplied by its importance
    weight (ones under uniform replay). Returns the metrics and the per-sample absolute value
    errors as new priorities.
    """
    model.train()
    dev = torch.device(device)
    grid = torch.from_numpy(batch.grid).to(dev)
    other = torch.from_numpy(batch.other).to(dev)
    target_policy = torch.from_numpy(batch.policy).to(dev)
    mask = torch.from_numpy(batch.valid_mask).to(dev)
    target_value = torch.from_numpy(batch.value_target).to(dev) / model.cfg.value_scale
    weights = torch.from_numpy(batch.weights).to(dev)

    logits, value = model(grid, other)
    log_probs = torch.log_softmax(logits.masked_fill(~mask, -torch.inf), dim=1)
    # Illegal actions have probability 0 and target 0; zero their -inf log-probability so that
    # 0 * -inf does not turn the sums into NaN.
    log_probs = log_probs.masked_fill(~mask, 0.0)
    policy_loss = -(target_policy * log_probs).sum(dim=1)
    value_error = value - target_value
    value_loss = value_error.square()
    total = (weights * (policy_loss + cfg.value_loss_weight * value_loss)).mean()

    optimizer.zero_grad(set_to_none=True)
    total.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm)
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step()

    with torch.no_grad():
        entropy = -(log_probs.exp() * log_probs).sum(dim=1).mean()
        values = torch.stack(
            [
                policy_loss.mean(),
                value_loss.mean(),
                total,
                grad_norm,
                entropy,
                value.mean() * model.cfg.value_scale,
                target_value.mean() * model.cfg.value_scale,
            ]
        ).tolist()
        priorities = value_error.abs().float().cpu().numpy()
    names = (
        "loss/policy",
        "loss/value",
        "loss/total",
        "train/grad_norm",
        "train/policy_entropy",
        "train/value_pred_mean",
        "train/value_target_mean",
    )
    metrics = dict(zip(names, values, strict=True))
    metrics["train/lr"] = float(lr)
    return TrainStepResult(metrics=metrics, priorities=priorities)
