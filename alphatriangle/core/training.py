"""AlphaZero's gradient step: policy and value losses on a batch of positions (the shape of
every algorithm's step: forward, loss, backward, clip, update; no I/O)."""

from __future__ import annotations

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR

from alphatriangle import metric_names as m
from alphatriangle.core.buffer import Batch
from alphatriangle.core.config import TrainConfig
from alphatriangle.core.network import AlphaTriangleNet
from alphatriangle.core.optimization import (
    TrainStepResult,
    apply_gradients,
    normalized_value_loss,
)


def train_step(
    model: AlphaTriangleNet | DistributedDataParallel,
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
    errors as new priorities. Raises ``NonFiniteLossError``, with the model and optimizer
    unchanged, when the loss or the gradient norm is not finite.

    ``model`` may be a DDP replica of the network (``core.data_parallel``): its forward and
    backward then average the gradients over the replicas before the clip and the update.
    """
    net = model.module if isinstance(model, DistributedDataParallel) else model
    model.train()
    dev = torch.device(device)
    grid = torch.from_numpy(batch.grid).to(dev)
    other = torch.from_numpy(batch.other).to(dev)
    target_policy = torch.from_numpy(batch.policy).to(dev)
    mask = torch.from_numpy(batch.valid_mask).to(dev)
    target_value = torch.from_numpy(batch.value_target).to(dev) / net.cfg.value_scale
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

    grad_norm, lr = apply_gradients(
        model, optimizer, scheduler, total, {"policy": policy_loss, "value": value_loss}, cfg
    )

    with torch.no_grad():
        entropy = -(log_probs.exp() * log_probs).sum(dim=1).mean()
        values = torch.stack(
            [
                policy_loss.mean(),
                value_loss.mean(),
                total,
                torch.tensor(grad_norm),
                entropy,
                value.mean() * net.cfg.value_scale,
                target_value.mean() * net.cfg.value_scale,
            ]
        ).tolist()
        priorities = value_error.abs().float().cpu().numpy()
    names = (
        m.LOSS_POLICY,
        m.LOSS_VALUE,
        m.LOSS_TOTAL,
        m.GRAD_NORM,
        m.POLICY_ENTROPY,
        m.VALUE_PRED_MEAN,
        m.VALUE_TARGET_MEAN,
    )
    metrics = dict(zip(names, values, strict=True))
    metrics[m.LEARNING_RATE] = float(lr)
    metrics.update(normalized_value_loss(value_error, target_value))
    return TrainStepResult(metrics=metrics, priorities=priorities)
