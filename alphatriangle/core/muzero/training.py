"""MuZero's loss over K unrolled steps, and its gradient step (the shape of AlphaZero's
``train_step``: forward, loss, backward, clip, update; no I/O)."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 (the conventional alias)
from torch.optim.lr_scheduler import LambdaLR

from alphatriangle import metric_names as m
from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.muzero.network import MuZeroNet
from alphatriangle.core.muzero.replay import MuZeroBatch
from alphatriangle.core.muzero.support import from_logits, to_support
from alphatriangle.core.optimization import (
    TrainStepResult,
    apply_gradients,
    normalized_value_loss,
)


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` in the forward pass; its gradient multiplied by ``scale`` in the backward pass."""
    return x * scale + x.detach() * (1.0 - scale)


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``-sum(target * log_softmax(logits))`` over the last axis."""
    return -(target * torch.log_softmax(logits, dim=-1)).sum(dim=-1)


def unrolled_loss(
    model: MuZeroNet, batch: MuZeroBatch, cfg: AlphaTriangleConfig, device: torch.device
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """The paper's loss of ``batch``: ``(total, parts, value errors [B])``.

    Per sample, with ``K = unroll_steps``: step 0 is ``f(h(o_t))``, step ``k >= 1`` is ``f`` of
    the state ``g`` reached after the moves ``a_t..a_{t+k-1}``. Each step's loss is
    ``policy CE (inside the game only) + value_loss_weight * value CE`` and, for ``k >= 1``,
    ``+ reward CE`` (and, with ``consistency_weight > 0``, that weight times ``1 - cosine``
    between the unrolled state and ``h(o_{t+k})``, inside the game), with categorical targets
    (two-hot over the supports); the steps ``k >= 1`` count ``1 / K`` each, and the gradient
    into the dynamics' input state is halved, so that the total gradient into the dynamics
    stays about that of one step. With ``stochastic``, a step where the game dealt also adds
    ``value_loss_weight * CE(Q(as), value target of t + k) + sum over slots of -log
    sigma(dealt shape)`` (``1 / K`` each), and its state is ``chance(as, dealt hand)``.
    ``total`` is the mean over the batch weighted by the importance weights.
    """
    mz = cfg.muzero
    grid = torch.from_numpy(batch.grid).to(device)
    other = torch.from_numpy(batch.other).to(device)
    actions = torch.from_numpy(batch.actions).to(device)
    policy_t = torch.from_numpy(batch.target_policy).to(device)
    mask = torch.from_numpy(batch.policy_mask).to(device).float()
    value_t = to_support(torch.from_numpy(batch.target_value).to(device), mz.value_support)
    reward_t = to_support(torch.from_numpy(batch.target_reward).to(device), mz.reward_support)
    weights = torch.from_numpy(batch.weights).to(device)

    state = model.represent(grid, other)
    policy, value = model.predict_root(state, other)
    policy_loss = cross_entropy(policy, policy_t[:, 0]) * mask[:, 0]
    value_loss = cross_entropy(value, value_t[:, 0])
    reward_loss = torch.zeros_like(value_loss)
    value_error = (from_logits(value) - torch.from_numpy(batch.target_value[:, 0]).to(device)).abs()
    steps = actions.shape[1]
    targets = _encoded_next_states(model, batch, device) if mz.consistency_weight > 0 else None
    consistency = torch.zeros_like(value_loss)
    read = None if batch.cell_masks is None else torch.from_numpy(batch.cell_masks).to(device)
    afterstate_loss = torch.zeros_like(value_loss)
    chance_loss = torch.zeros_like(value_loss)
    if mz.stochastic:
        if batch.deals is None or batch.deal_codes is None:
            raise ValueError("Stochastic MuZero's loss needs batches with deals and deal_codes")
        deals = torch.from_numpy(batch.deals).to(device)
        codes = torch.from_numpy(batch.deal_codes).to(device)
    for k in range(1, steps + 1):
        cells = None if read is None else read[:, k - 1]
        reward, state = model.dynamics(scale_gradient(state, 0.5), actions[:, k - 1], cells)
        if mz.stochastic:
            # Where the game dealt, the dynamics reached an afterstate: its value against the
            # next position's target, its chance distribution against the deal the game made,
            # and the next state from that deal (the true outcome, as the paper's encoder
            # would give it).
            deal = deals[:, k - 1]
            q, sigma = model.afterstate_predict(state)
            afterstate_loss = afterstate_loss + cross_entropy(q, value_t[:, k]) * deal / steps
            log_sigma = torch.log_softmax(sigma, dim=-1)
            dealt = log_sigma.gather(2, codes[:, k - 1, :, None]).squeeze(2).sum(dim=1)
            chance_loss = chance_loss - dealt * deal / steps
            after_deal = model.chance(state, codes[:, k - 1])
            state = torch.where(deal[:, None, None, None], after_deal, state)
        policy, value = model.predict(state)
        policy_loss = policy_loss + cross_entropy(policy, policy_t[:, k]) * mask[:, k] / steps
        value_loss = value_loss + cross_entropy(value, value_t[:, k]) / steps
        reward_loss = reward_loss + cross_entropy(reward, reward_t[:, k - 1]) / steps
        if targets is not None:
            cosine = F.cosine_similarity(state.flatten(1), targets[:, k - 1], dim=1)
            consistency = consistency + (1.0 - cosine) * mask[:, k] / steps
    per_sample = policy_loss + mz.value_loss_weight * value_loss + reward_loss
    per_sample = per_sample + mz.consistency_weight * consistency
    per_sample = per_sample + mz.value_loss_weight * afterstate_loss + chance_loss
    total = (weights * per_sample).mean()
    parts = {
        m.LOSS_POLICY: policy_loss.mean(),
        m.LOSS_VALUE: value_loss.mean(),
        m.LOSS_REWARD: reward_loss.mean(),
    }
    if targets is not None:
        parts[m.LOSS_CONSISTENCY] = consistency.mean()
    if mz.stochastic:
        parts[m.LOSS_AFTERSTATE_VALUE] = afterstate_loss.mean()
        parts[m.LOSS_CHANCE] = chance_loss.mean()
    return total, parts, value_error.detach()


def _encoded_next_states(
    model: MuZeroNet, batch: MuZeroBatch, device: torch.device
) -> torch.Tensor:
    """``h(o_{t+k})`` flattened, ``[B, K, D]``, without gradient: the consistency targets."""
    if batch.next_grid is None or batch.next_other is None:
        raise ValueError("the consistency loss needs batches with next_grid and next_other")
    grid, other = batch.next_grid, batch.next_other
    b, k = grid.shape[:2]
    with torch.no_grad():
        encoded = model.represent(
            torch.from_numpy(grid.reshape(b * k, *grid.shape[2:])).to(device),
            torch.from_numpy(other.reshape(b * k, -1)).to(device),
        )
    return encoded.flatten(1).view(b, k, -1)


def muzero_train_step(
    model: MuZeroNet,
    optimizer: torch.optim.Optimizer,
    scheduler: LambdaLR,
    batch: MuZeroBatch,
    cfg: AlphaTriangleConfig,
    device: str | torch.device = "cpu",
) -> TrainStepResult:
    """One gradient step on ``unrolled_loss``; the metrics and the start positions' absolute
    value errors as priorities. ``NonFiniteLossError`` (model unchanged) as AlphaZero's."""
    model.train()
    total, parts, errors = unrolled_loss(model, batch, cfg, torch.device(device))
    grad_norm, lr = apply_gradients(model, optimizer, scheduler, total, parts, cfg.train)
    metrics = {name: float(value.item()) for name, value in parts.items()}
    metrics[m.LOSS_TOTAL] = float(total.item())
    metrics[m.GRAD_NORM] = grad_norm
    metrics[m.LEARNING_RATE] = lr
    # The first step's value errors against their n-step targets, as AlphaZero's are.
    metrics.update(normalized_value_loss(errors, torch.from_numpy(batch.target_value[:, 0])))
    return TrainStepResult(metrics=metrics, priorities=errors.float().cpu().numpy())
