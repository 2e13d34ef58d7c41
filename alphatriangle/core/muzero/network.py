"""MuZero's network: representation ``h``, dynamics ``g`` and prediction ``f``.

Sizes come from ``ModelConfig`` (``channels``, ``num_blocks``, ``extra_hidden``,
``policy_hidden``, ``value_hidden``; ``ModelConfig.preset("large")`` for a GPU) and the
supports from ``MuZeroConfig``.

- ``h(grid, other) -> s``: the AlphaZero trunk (a 3x3 stem whose channels get a bias from the
  embedded extra features, then ``num_blocks`` residual blocks), so the latent state ``s`` is a
  ``[channels, ROWS, COLS]`` map over the board.
- ``g(s, a) -> (r, s')``: the action as one-hot planes (one per hand slot, a 1 at the anchor
  cell), concatenated to ``s``, a 3x3 convolution and ``num_blocks`` residual blocks; the reward
  from pooled features of ``s'``.
- ``f(s) -> (policy logits, value)``: per slot, a ``(3, 5)`` convolution (it sees the cells a
  shape anchored there can cover) gives one logit per (slot, row, col), which flattens to
  trianglengin's action ids; the value from pooled features.

Every latent state is scaled to ``[0, 1]`` per sample (min-max over its entries), as in the
paper, so that unrolled states stay on the scale the prediction was trained on. Values and
rewards are categorical over ``-S..S`` (``alphatriangle.core.muzero.support``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 (the conventional alias)
from torch import nn
from trianglengin import EnvConfig

from alphatriangle.core.config import ModelConfig, MuZeroConfig
from alphatriangle.core.features import feature_spec
from alphatriangle.core.muzero.support import from_logits
from alphatriangle.core.network import ResidualBlock


def scale_latent(s: torch.Tensor) -> torch.Tensor:
    """Each sample of ``s [B, ...]`` min-max scaled to ``[0, 1]``."""
    flat = s.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    high = flat.max(dim=1, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(1e-5)).view_as(s)


def _pooled_head(channels: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(2 * channels, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


def _pool(s: torch.Tensor) -> torch.Tensor:
    return torch.cat([s.mean(dim=(2, 3)), s.amax(dim=(2, 3))], dim=1)


class MuZeroNet(nn.Module):
    """``represent``, ``dynamics`` and ``predict``; ``initial`` and ``recurrent`` chain them as
    the search does. Logits are returned for training; ``value``/``reward`` scalars (the
    expectation of the distribution, unsquashed) for the search."""

    def __init__(
        self,
        model_cfg: ModelConfig | None = None,
        muzero_cfg: MuZeroConfig | None = None,
        env_cfg: EnvConfig | None = None,
    ) -> None:
        super().__init__()
        cfg, mz = model_cfg or ModelConfig(), muzero_cfg or MuZeroConfig()
        spec = feature_spec(env_cfg)
        self.cfg, self.muzero_cfg = cfg, mz
        self.num_slots, self.rows, self.cols = spec.num_slots, spec.rows, spec.cols
        self.action_dim = spec.action_dim
        ch = cfg.channels

        self.stem = nn.Conv2d(spec.num_planes, ch, 3, padding=1)
        self.extra = nn.Sequential(nn.Linear(spec.other_dim, cfg.extra_hidden), nn.ReLU())
        self.extra_to_trunk = nn.Linear(cfg.extra_hidden, ch)
        self.represent_blocks = nn.Sequential(*(ResidualBlock(ch) for _ in range(cfg.num_blocks)))

        self.dynamics_in = nn.Conv2d(ch + spec.num_slots, ch, 3, padding=1)
        self.dynamics_blocks = nn.Sequential(*(ResidualBlock(ch) for _ in range(cfg.num_blocks)))
        self.reward_head = _pooled_head(ch, cfg.value_hidden, 2 * mz.reward_support + 1)

        self.policy_hidden = nn.Conv2d(ch, cfg.policy_hidden, (3, 5), padding=(1, 2))
        self.policy_out = nn.Conv2d(cfg.policy_hidden, spec.num_slots, 1)
        self.value_head = _pooled_head(ch, cfg.value_hidden, 2 * mz.value_support + 1)

    def represent(self, grid: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """``h``: grid ``[B, C, H, W]`` and extra features ``[B, F]`` to ``s [B, ch, H, W]``."""
        bias = self.extra_to_trunk(self.extra(other))[:, :, None, None]
        return scale_latent(self.represent_blocks(F.relu(self.stem(grid) + bias)))

    def action_planes(self, actions: torch.Tensor) -> torch.Tensor:
        """Action ids ``[B]`` as one-hot planes ``[B, slots, H, W]`` (slot, anchor cell)."""
        planes = torch.zeros(
            actions.shape[0], self.action_dim, device=actions.device, dtype=torch.float32
        )
        planes[torch.arange(actions.shape[0], device=actions.device), actions] = 1.0
        return planes.view(-1, self.num_slots, self.rows, self.cols)

    def dynamics(self, s: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``g``: ``(reward logits [B, 2R + 1], s' [B, ch, H, W])``."""
        x = F.relu(self.dynamics_in(torch.cat([s, self.action_planes(actions)], dim=1)))
        nxt = scale_latent(self.dynamics_blocks(x))
        return self.reward_head(_pool(nxt)), nxt

    def predict(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``f``: ``(policy logits [B, A] by action id, value logits [B, 2V + 1])``."""
        policy = self.policy_out(F.relu(self.policy_hidden(s))).flatten(1)
        return policy, self.value_head(_pool(s))

    def initial(
        self, grid: torch.Tensor, other: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The search's root: ``(s, policy logits, value)``."""
        s = self.represent(grid, other)
        policy, value = self.predict(s)
        return s, policy, from_logits(value)

    def recurrent(
        self, s: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step in the model: ``(s', reward, policy logits, value)``."""
        reward, nxt = self.dynamics(s, actions)
        policy, value = self.predict(nxt)
        return nxt, from_logits(reward), policy, from_logits(value)
