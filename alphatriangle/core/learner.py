"""The learner: network, optimizer, LR schedule, replay buffer and run counters in one object.

``Learner.step(batch)`` is one gradient step; ``Learner.state_dict()`` is the checkpoint and
``load_state_dict`` mirrors it exactly (the buffer is saved beside it, less often, as its own
``state_dict``). ``train_step`` is the step itself: forward, losses, backward, clip, update.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR

from alphatriangle import metric_names as m
from alphatriangle.core.buffer import Batch, ReplayBuffer
from alphatriangle.core.config import AlphaTriangleConfig, TrainConfig
from alphatriangle.core.features import feature_spec
from alphatriangle.core.network import AlphaTriangleNet
from alphatriangle.core.selfplay import EpisodeRecord
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
    errors as new priorities. Raises ``NonFiniteLossError``, with the model and optimizer
    unchanged, when the loss or the gradient norm is not finite.
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
    if not bool(torch.isfinite(total) & torch.isfinite(grad_norm)):
        # One such update would make every weight NaN; refuse it and leave the model as it was.
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(
            f"non-finite loss (loss/total={total.item():.4g}, policy="
            f"{policy_loss.mean().item():.4g}, value={value_loss.mean().item():.4g}, gradient "
            f"norm {grad_norm.item():.4g}); the step was not applied"
        )
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
    return TrainStepResult(metrics=metrics, priorities=priorities)


@dataclass
class Counters:
    """Run totals; saved in every checkpoint so a resumed run continues them."""

    step: int = 0
    episodes: int = 0
    samples_generated: int = 0
    samples_trained: int = 0
    simulations: int = 0
    best_eval_score: float = float("-inf")
    """Best mean score of a periodic evaluation; its checkpoint is kept as the best one."""


STATE_KEYS = ("model", "optimizer", "scheduler", "counters", "rng")
"""The entries of a learner checkpoint."""


class Learner:
    """Everything a gradient step changes, and the checkpoint of it.

    ``state_dict()`` holds CPU tensors only (the state goes to CPU actors, which cannot unpickle
    CUDA tensors), so the same checkpoint loads on a CPU or a GPU learner.
    """

    def __init__(self, cfg: AlphaTriangleConfig, device: str | torch.device = "cpu") -> None:
        tc = cfg.train
        self.cfg = cfg
        self.device = torch.device(device)
        torch.manual_seed(tc.seed)
        self.model = AlphaTriangleNet(cfg.model).to(self.device)
        self.optimizer = make_optimizer(self.model, tc)
        self.scheduler = make_scheduler(self.optimizer, tc)
        self.buffer = new_buffer(cfg)
        self.counters = Counters()

    def add_episode(self, record: EpisodeRecord) -> None:
        self.buffer.add_episode(record)
        self.counters.episodes += 1
        self.counters.samples_generated += record.length
        self.counters.simulations += record.simulations

    def can_train(self) -> bool:
        """The buffer is warm and the next step keeps within the replay ratio."""
        tc, c = self.cfg.train, self.counters
        return len(self.buffer) >= tc.min_buffer_size and (
            c.samples_trained + tc.batch_size <= tc.replay_ratio * c.samples_generated
        )

    def step(self, batch: Batch) -> dict[str, float]:
        """One gradient step on ``batch``; its metrics. ``NonFiniteLossError`` names the step."""
        try:
            result = train_step(
                self.model, self.optimizer, self.scheduler, batch, self.cfg.train, self.device
            )
        except NonFiniteLossError as err:
            raise NonFiniteLossError(f"step {self.counters.step + 1}: {err}") from None
        if self.cfg.train.prioritized_replay:
            self.buffer.update_priorities(batch.indices, result.priorities)
        self.counters.step += 1
        self.counters.samples_trained += len(batch.indices)
        return result.metrics

    def weights(self) -> dict[str, torch.Tensor]:
        """A CPU copy of the network's weights (what workers and evaluations load)."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: CPU tensors, numbers and strings only (``torch.load(weights_only)``
        reads it back). Raises ``NonFiniteLossError`` rather than return non-finite weights."""
        weights = self.weights()
        bad = [name for name, tensor in weights.items() if not torch.isfinite(tensor).all()]
        if bad:
            raise NonFiniteLossError(
                f"the weights of step {self.counters.step} are not finite ({', '.join(bad[:3])}"
                f"{' ...' if len(bad) > 3 else ''}); they were not saved"
            )
        return {
            "model": weights,
            "optimizer": _on_cpu(self.optimizer.state_dict()),
            "scheduler": self.scheduler.state_dict(),
            "counters": dataclasses.asdict(self.counters),
            "rng": {"torch": torch.get_rng_state()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state_dict()`` output (check it first with ``state_problem``)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        saved = state["counters"]
        # Counters a newer trainer dropped are ignored, so older checkpoints still resume.
        self.counters = Counters(**{f.name: saved[f.name] for f in dataclasses.fields(Counters)})
        torch.set_rng_state(state["rng"]["torch"])


def weight_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Name to shape of every tensor in ``model.state_dict()``: what ``state_problem`` checks."""
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def weights_problem(weights: object, shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """Why ``weights`` cannot be loaded into a network with these tensor ``shapes``, or None."""
    if not isinstance(weights, Mapping):
        return "it holds no network weights"
    missing = sorted(set(shapes) - set(weights))
    unexpected = sorted(set(weights) - set(shapes))
    if missing or unexpected:
        return (
            f"its network has other tensors ({len(missing)} missing, {len(unexpected)} "
            "unexpected): saved with another model config or by another program"
        )
    for name, shape in shapes.items():
        tensor = weights[name]
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
            found = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor)
            return f"weight {name} is {found}, expected shape {shape}"
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return f"weight {name} is not finite"
    return None


def state_problem(state: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """Why ``state`` is not a learner checkpoint for a network of these ``shapes``, or None.
    A ``trieye`` validator (bind ``shapes`` with ``functools.partial``)."""
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        return f"no {', '.join(missing)} entries: not a checkpoint of this trainer"
    counters = state["counters"]
    if not isinstance(counters, Mapping) or any(
        not isinstance(counters.get(f.name), int | float) for f in dataclasses.fields(Counters)
    ):
        return "its counters are not this trainer's"
    return weights_problem(state["model"], shapes)


def new_buffer(cfg: AlphaTriangleConfig) -> ReplayBuffer:
    """An empty replay buffer of the run's capacity, shapes and replay settings."""
    spec = feature_spec()
    tc = cfg.train
    return ReplayBuffer(
        capacity=tc.buffer_capacity,
        grid_shape=spec.grid_shape,
        other_dim=spec.other_dim,
        action_dim=spec.action_dim,
        prioritized=tc.prioritized_replay,
        alpha=tc.per_alpha,
        beta=tc.per_beta,
        seed=tc.seed,
    )


def _on_cpu(value: Any) -> Any:
    """``value`` with every tensor in it on the CPU (a no-op for a CPU learner)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _on_cpu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_on_cpu(item) for item in value)
    return value
