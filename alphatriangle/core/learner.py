"""The learner: network, optimizer, LR schedule, replay buffer and run counters in one object,
for either algorithm (``alphatriangle.core.algorithm`` says what differs).

``Learner.step(batch)`` is one gradient step; ``Learner.state_dict()`` is the checkpoint and
``load_state_dict`` mirrors it exactly (the buffer is saved beside it, less often, as its own
``state_dict``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from alphatriangle import metric_names as m
from alphatriangle.core.algorithm import build_model, gradient_step, new_buffer
from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.diagnostics import network_outputs
from alphatriangle.core.muzero.network import MuZeroNet
from alphatriangle.core.muzero.probe import (
    PROBE_POSITIONS,
    PROBE_SEEDS,
    PROBE_SPACING,
    ClearProbe,
    clear_probe,
    probe_metrics,
)
from alphatriangle.core.optimization import TrainStepResult, make_optimizer, make_scheduler
from alphatriangle.core.selfplay import EpisodeRecord
from alphatriangle.core.symmetry import augment_batch, choose_symmetries, symmetry_tables
from alphatriangle.core.targets import has_bootstrap, needs_bootstrap, with_bootstrap
from alphatriangle.errors import NonFiniteLossError


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
        self.model = build_model(cfg).to(self.device)
        self.optimizer = make_optimizer(self.model, tc)
        self.scheduler = make_scheduler(self.optimizer, tc)
        self.buffer = new_buffer(cfg)
        self.counters = Counters()
        # Positions that left the buffer since the last step's metrics, and how often they had
        # been sampled; not checkpointed (a resume loses at most one step's worth).
        self._evicted = 0
        self._evicted_samples = 0
        self._symmetries = (
            symmetry_tables().index(tc.augment_symmetries) if tc.augment_symmetries else None
        )
        self._probe: ClearProbe | None = None
        """MuZero's probe positions, found at the first ``muzero/*`` diagnosis (seconds of
        random play that a learner that never gets there should not pay)."""

    def add_episode(self, record: EpisodeRecord) -> None:
        """Store the episode's positions with their targets; an n-step value target
        (``core.targets``) of a record without root values bootstraps from this network's
        values of its positions."""
        if needs_bootstrap(self.cfg.train) and not has_bootstrap(record):
            # Records from Ray's object store are read-only, which torch warns about.
            grid, other = record.grid.copy(), record.other.copy()
            _, values = network_outputs(self.model, grid, other, self.device)
            record = with_bootstrap(record, values)
        evicted = self.buffer.add_episode(record)
        self._evicted += len(evicted)
        self._evicted_samples += int(evicted.sum())
        self.counters.episodes += 1
        self.counters.samples_generated += record.length
        self.counters.simulations += record.simulations

    def can_train(self) -> bool:
        """The buffer is warm and the next step keeps within the replay ratio."""
        tc, c = self.cfg.train, self.counters
        return len(self.buffer) >= tc.min_buffer_size and (
            c.samples_trained + tc.batch_size <= tc.replay_ratio * c.samples_generated
        )

    def step(self, batch: Any) -> dict[str, float]:
        """One gradient step on ``batch`` (a sample of ``self.buffer``); its metrics.
        ``NonFiniteLossError`` names the step.

        Besides the step's losses, the metrics say how stale and how reused the data is:
        ``learn/sample_age``, the mean age of the batch's positions in learner steps (this
        step's weights are version ``counters.step``; a position's version is that of the
        weights that searched it; positions of unknown version are left out), and
        ``learn/times_sampled_at_eviction``, how often the positions that left the buffer since
        the previous step had been sampled (only when some left). MuZero's learner adds the
        ``muzero/*`` diagnostics (``core.muzero.probe``) every ``[muzero] probe_every`` steps.

        With ``train.augment_symmetries``, each sample is first turned by a symmetry that
        ``choose_symmetries`` draws from a generator seeded by the run's seed and this step's
        number (so a resumed run draws what it would have), and ``learn/augmented_fraction``
        says how many were turned by another symmetry than the identity.
        """
        ages = self.buffer.version_ages(batch.indices, self.counters.step)
        augmented = None
        if self._symmetries is not None:
            rng = np.random.default_rng([self.cfg.train.seed, self.counters.step])
            tables = symmetry_tables()
            chosen = choose_symmetries(batch.other, self._symmetries, tables, rng)
            batch = augment_batch(batch, chosen, tables)
            augmented = float(np.mean(chosen != 0))
        try:
            result = self._gradient_step(batch)
        except NonFiniteLossError as err:
            raise NonFiniteLossError(f"step {self.counters.step + 1}: {err}") from None
        if self.cfg.train.prioritized_replay:
            self.buffer.update_priorities(batch.indices, result.priorities)
        self.counters.step += 1
        self.counters.samples_trained += len(batch.indices)
        metrics = dict(result.metrics)
        if augmented is not None:
            metrics[m.LEARN_AUGMENTED] = augmented
        if len(ages):
            metrics[m.LEARN_SAMPLE_AGE] = float(np.mean(ages))
        if self._evicted:
            metrics[m.LEARN_TIMES_SAMPLED_AT_EVICTION] = self._evicted_samples / self._evicted
            self._evicted = self._evicted_samples = 0
        every = self.cfg.muzero.probe_every
        if isinstance(self.model, MuZeroNet) and every and self.counters.step % every == 0:
            if self._probe is None:
                self._probe = clear_probe(PROBE_SEEDS, PROBE_POSITIONS, every=PROBE_SPACING)
            metrics.update(probe_metrics(self.model, self._probe, self.cfg.muzero.discount))
        return metrics

    def _gradient_step(self, batch: Any) -> TrainStepResult:
        """Forward, losses, backward, clip and update (``DataParallelLearner`` runs it through
        its DDP replica instead)."""
        return gradient_step(
            self.model, self.optimizer, self.scheduler, batch, self.cfg, self.device
        )

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


def _on_cpu(value: Any) -> Any:
    """``value`` with every tensor in it on the CPU (a no-op for a CPU learner)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _on_cpu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_on_cpu(item) for item in value)
    return value
