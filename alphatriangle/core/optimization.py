"""What every algorithm's gradient step shares: AdamW, the learning-rate schedule, and applying
one loss (backward, clip, refuse non-finite, step)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR

from alphatriangle import metric_names as m
from alphatriangle.core.config import TrainConfig
from alphatriangle.errors import NonFiniteLossError

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


def apply_gradients(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LambdaLR,
    total: torch.Tensor,
    parts: Mapping[str, torch.Tensor],
    cfg: TrainConfig,
) -> tuple[float, float]:
    """Backward of ``total``, gradient clipping at ``grad_clip_norm``, optimizer and scheduler
    step: ``(gradient norm, learning rate used)``. Raises ``NonFiniteLossError`` naming the
    loss ``parts``, with the model and optimizer unchanged, when the loss or the gradient norm
    is not finite."""
    optimizer.zero_grad(set_to_none=True)
    total.backward()  # type: ignore[no-untyped-call]
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm)
    if not bool(torch.isfinite(total) & torch.isfinite(grad_norm)):
        # One such update would make every weight NaN; refuse it and leave the model as it was.
        optimizer.zero_grad(set_to_none=True)
        named = ", ".join(f"{name}={value.mean().item():.4g}" for name, value in parts.items())
        raise NonFiniteLossError(
            f"non-finite loss (loss/total={total.item():.4g}, {named}, gradient norm "
            f"{grad_norm.item():.4g}); the step was not applied"
        )
    lr = float(optimizer.param_groups[0]["lr"])
    optimizer.step()
    scheduler.step()
    return float(grad_norm.item()), lr


def normalized_value_loss(errors: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """``{loss/value_normalized: mean(errors²) / Var(targets)}`` over a batch's value errors and
    targets ``[B]`` (population variance): 0 for a perfect value head, 1 for one no better than
    the batch's mean target, whatever the scale of the targets. Empty when the targets do not
    vary."""
    variance = float(targets.detach().double().var(unbiased=False)) if len(targets) else 0.0
    if variance == 0.0:
        return {}
    return {m.LOSS_VALUE_NORMALIZED: float(errors.detach().double().square().mean()) / variance}
