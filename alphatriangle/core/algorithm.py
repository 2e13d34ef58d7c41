"""What differs between the learning algorithms (``AlphaTriangleConfig.algorithm``), in one
place: the network (and the settings that shape its weights), the replay buffer (and the memory
it needs), the gradient step (and its cost), and the search that plays with the network.
Everything else (self-play, the learner loop, players, the pipeline) takes these.

- ``alphazero``: ``AlphaTriangleNet`` searched by ``trimcts`` on the real game (PUCT or Gumbel);
  positions with the value targets of ``[train] value_target`` (``core.targets``); policy and value losses.
- ``muzero``: ``MuZeroNet`` searched in its latent space (``core.muzero.search``); whole games,
  sampled with K unroll steps and n-step targets; the unrolled loss. ``[muzero] stochastic``
  makes it Stochastic MuZero (afterstates and chance nodes where the game deals), a network
  setting like the supports.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from alphatriangle.core.buffer import PositionBuffer, ReplayBuffer
from alphatriangle.core.config import AlphaTriangleConfig, MCTSConfig
from alphatriangle.core.features import feature_spec
from alphatriangle.core.muzero.network import MuZeroNet
from alphatriangle.core.muzero.replay import TrajectoryBuffer
from alphatriangle.core.muzero.search import LatentSearcher, MuZeroEvaluator
from alphatriangle.core.muzero.training import muzero_train_step
from alphatriangle.core.network import AlphaTriangleNet
from alphatriangle.core.optimization import TrainStepResult
from alphatriangle.core.players import SearchPlayer
from alphatriangle.core.search import NetworkEvaluator, Searcher, SearchSettings, tree_searcher
from alphatriangle.core.targets import alphazero_value_targets
from alphatriangle.core.training import train_step
from alphatriangle.errors import ConfigError


def build_model(cfg: AlphaTriangleConfig) -> nn.Module:
    """The run's network, freshly initialised (on the CPU)."""
    if cfg.algorithm == "muzero":
        return MuZeroNet(cfg.model, cfg.muzero)
    return AlphaTriangleNet(cfg.model)


def network_settings(cfg: AlphaTriangleConfig) -> tuple[object, ...]:
    """The settings that shape the network's weights: a checkpoint loads only into a network
    built with equal ones."""
    if cfg.algorithm == "muzero":
        mz = cfg.muzero
        return (
            cfg.model,
            mz.value_support,
            mz.reward_support,
            mz.reward_read,
            mz.stochastic,
            mz.root_policy,
        )
    return (cfg.model,)


def new_buffer(cfg: AlphaTriangleConfig) -> PositionBuffer[Any]:
    """An empty replay buffer of the run's algorithm, capacity and replay settings."""
    return _buffer(cfg, cfg.train.buffer_capacity)


def buffer_bytes_per_position(cfg: AlphaTriangleConfig) -> int:
    """Bytes one position takes in the run's replay buffer, read off a one-slot buffer of the
    same kind, so that it follows whatever arrays the buffer allocates."""
    return _buffer(cfg, 1).bytes_per_position


def check_buffer_fits(cfg: AlphaTriangleConfig) -> None:
    """Refuse a replay buffer that cannot fit in this machine's memory, before anything starts
    (numpy would fail with "array is too big", or the OS kill the trainer hours later)."""
    needed = cfg.train.buffer_capacity * buffer_bytes_per_position(cfg)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > total:
        raise ConfigError(
            f"train.buffer_capacity = {cfg.train.buffer_capacity}: the replay buffer would "
            f"need {needed / 2**30:.1f} GiB, more than this machine's {total / 2**30:.1f} GiB "
            "of memory; lower it"
        )


def _buffer(cfg: AlphaTriangleConfig, capacity: int) -> PositionBuffer[Any]:
    spec, tc = feature_spec(), cfg.train
    if cfg.algorithm == "muzero":
        mz = cfg.muzero
        return TrajectoryBuffer(
            capacity,
            spec.grid_shape,
            spec.other_dim,
            spec.action_dim,
            unroll_steps=mz.unroll_steps,
            td_steps=mz.td_steps,
            discount=mz.discount,
            clear_oversample=mz.clear_oversample,
            clear_oversample_beta=mz.clear_oversample_beta,
            prioritized=tc.prioritized_replay,
            alpha=tc.per_alpha,
            beta=tc.per_beta,
            seed=tc.seed,
        )
    return ReplayBuffer(
        capacity,
        spec.grid_shape,
        spec.other_dim,
        spec.action_dim,
        prioritized=tc.prioritized_replay,
        alpha=tc.per_alpha,
        beta=tc.per_beta,
        seed=tc.seed,
        targets=functools.partial(alphazero_value_targets, train=tc),
    )


def gradient_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LambdaLR,
    batch: Any,
    cfg: AlphaTriangleConfig,
    device: torch.device,
) -> TrainStepResult:
    """One gradient step of the run's algorithm on a batch of its buffer."""
    if cfg.algorithm == "muzero":
        assert isinstance(model, MuZeroNet)
        return muzero_train_step(model, optimizer, scheduler, batch, cfg, device)
    assert isinstance(model, AlphaTriangleNet)
    return train_step(model, optimizer, scheduler, batch, cfg.train, device)


def algorithm_name(cfg: AlphaTriangleConfig) -> str:
    """The run's algorithm for people, with what sets MuZero's learning apart."""
    if cfg.algorithm == "alphazero":
        return "AlphaZero"
    mz = cfg.muzero
    name = "Stochastic MuZero" if mz.stochastic else "MuZero"
    return f"{name} (unroll {mz.unroll_steps}, td {mz.td_steps}, discount {mz.discount:g})"


def learner_sample_cost(cfg: AlphaTriangleConfig) -> float:
    """Network passes one training sample costs the learner: one for AlphaZero; MuZero's
    unrolls ``K`` steps, each about one more pass, so ``1 + K``."""
    if cfg.algorithm == "muzero":
        return 1.0 + cfg.muzero.unroll_steps
    return 1.0


def searcher(
    model: nn.Module,
    cfg: AlphaTriangleConfig,
    *,
    noise: bool,
    mcts: MCTSConfig | None = None,
    device: str | torch.device = "cpu",
) -> Searcher[Any]:
    """The search that plays with ``model`` (``mcts`` overrides ``cfg.mcts``, e.g. another
    number of simulations); root noise only with ``noise`` (self-play)."""
    settings = SearchSettings.of(mcts or cfg.mcts, noise=noise, muzero=cfg.muzero)
    if cfg.algorithm == "muzero":
        assert isinstance(model, MuZeroNet)
        return LatentSearcher(MuZeroEvaluator(model, device), settings)
    assert isinstance(model, AlphaTriangleNet)
    return tree_searcher(NetworkEvaluator(model, device), settings)


def agent_player(
    model: nn.Module,
    cfg: AlphaTriangleConfig,
    mcts: MCTSConfig | None = None,
    device: str | torch.device = "cpu",
) -> SearchPlayer:
    """The trained agent as an evaluation player: the run's own search, without noise."""
    return SearchPlayer(searcher(model, cfg, noise=False, mcts=mcts, device=device))
