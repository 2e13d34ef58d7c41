"""The policy/value network.

Architecture (sizes from ``ModelConfig``):

- Trunk: a 3x3 convolution over the grid planes, plus a per-channel bias computed from the
  extra-feature vector (so the shapes in hand condition every cell), then ``num_blocks``
  residual blocks of two 3x3 convolutions. No normalisation layers: inference runs on batches
  of a few leaves, and the net is small enough to train stably without them.
- Policy head, "footprint pooling": the logit of placing slot ``s``'s shape at anchor ``p`` is
  computed from the trunk features of exactly the cells that placement would cover. A 1x1
  convolution gives ``policy_hidden`` channels per footprint offset (10 offsets: rows 0..1,
  columns -2..2 from the anchor); for each slot, the maps of the offsets its shape covers are
  summed (shifted to the anchor), a per-slot embedding of the shape is added, and after a ReLU
  a linear layer gives one logit per (slot, row, col), which flattens to trianglengin's action
  ids. This gives the policy the shapes' geometry for a few hundred thousand multiply-adds per
  state, which matters on CPU; the trunk's 3x3 convolutions are the dominant cost.
- Value head: a scalar regression of the future score gain ``(final_score - score_t) /
  value_scale`` from average- and max-pooled trunk features and the embedded extra features.
  A scalar (rather than categorical) value was chosen because the targets are non-negative, of
  one well-scaled unit after dividing by ``value_scale``, and the tree needs only the mean;
  MSE on it is the cheapest head to evaluate, and the evaluator adds the banked score back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 (the conventional alias)
from torch import nn
from trianglengin import EnvConfig

from alphatriangle.core.config import ModelConfig
from alphatriangle.core.features import (
    FOOTPRINT_OFFSETS,
    FOOTPRINT_START,
    SLOT_FEATURES,
    feature_spec,
)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection: ``relu(x + conv2(relu(conv1(x))))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


FOOTPRINT_PAD: tuple[int, int, int, int] = (
    max(0, -min(dc for _, dc in FOOTPRINT_OFFSETS)),
    max(0, max(dc for _, dc in FOOTPRINT_OFFSETS)),
    max(0, -min(dr for dr, _ in FOOTPRINT_OFFSETS)),
    max(0, max(dr for dr, _ in FOOTPRINT_OFFSETS)),
)
"""``F.pad`` of the policy map (left, right, top, bottom) that keeps every footprint offset of
every anchor inside it."""


def footprint_index(rows: int, cols: int) -> torch.Tensor:
    """int64 ``[K, rows * cols]``: footprint offset ``k`` of the anchor at flattened cell
    ``(y, x)`` reads flattened cell ``(y + dr_k, x + dc_k)`` of the ``FOOTPRINT_PAD``-padded
    policy map. One gather with it (not K slices) keeps the backward pass to a single
    scatter."""
    left, right, top, _ = FOOTPRINT_PAD
    padded_cols = cols + left + right
    y, x = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    return torch.stack(
        [((y + dr + top) * padded_cols + x + dc + left).reshape(-1) for dr, dc in FOOTPRINT_OFFSETS]
    )


def footprint_logits(
    x: torch.Tensor,
    other: torch.Tensor,
    num_slots: int,
    policy_in: nn.Conv2d,
    slot_embed: nn.Linear,
    policy_out: nn.Linear,
    shift_index: torch.Tensor,
) -> torch.Tensor:
    """Footprint pooling (module docstring): policy logits ``[B, slots * H * W]`` in action-id
    order from features ``x [B, ch, H, W]`` and the hand in extra features ``other [B, F]``.
    ``policy_in`` gives ``K * hid`` channels, ``slot_embed`` embeds a slot's features into
    ``hid``, ``policy_out`` maps ``hid`` to one logit; ``shift_index`` is ``footprint_index``."""
    b, _, rows, cols = x.shape
    slots = other[:, : num_slots * SLOT_FEATURES].reshape(b, num_slots, SLOT_FEATURES)
    footprint = slots[:, :, FOOTPRINT_START : FOOTPRINT_START + len(FOOTPRINT_OFFSETS)]
    k, hid, cells = len(FOOTPRINT_OFFSETS), policy_out.in_features, rows * cols
    p = F.pad(policy_in(x), FOOTPRINT_PAD)  # [B, K * hid, H + pads, W + pads]
    p = p.reshape(b, k, hid, -1)
    index = shift_index[None, :, None, :].expand(b, k, hid, cells)
    # shifted[:, i, :, cell] is what covering `cell + offset i` contributes to a placement
    # anchored at `cell`.
    shifted = torch.gather(p, 3, index)  # [B, K, hid, H * W]
    pooled = torch.bmm(footprint, shifted.reshape(b, k, hid * cells))  # [B, S, hid * H * W]
    pooled = pooled.reshape(b * num_slots, hid, cells)
    pooled = F.relu(pooled + slot_embed(slots).reshape(b * num_slots, hid, 1))
    logits = torch.matmul(policy_out.weight, pooled)  # [B * S, 1, H * W]
    return logits.reshape(b, num_slots * cells) + policy_out.bias


class AlphaTriangleNet(nn.Module):
    """``forward(grid [B, C, H, W], other [B, F]) -> (policy_logits [B, A], value [B])``.

    ``value`` is the predicted future score gain divided by ``model_cfg.value_scale``.
    """

    _shift_index: torch.Tensor

    def __init__(self, model_cfg: ModelConfig | None = None, env_cfg: EnvConfig | None = None):
        super().__init__()
        cfg = model_cfg or ModelConfig()
        spec = feature_spec(env_cfg)
        self.cfg = cfg
        self.num_slots = spec.num_slots
        self.rows, self.cols = spec.rows, spec.cols
        self.action_dim = spec.action_dim
        ch, hid = cfg.channels, cfg.policy_hidden

        self.stem = nn.Conv2d(spec.num_planes, ch, 3, padding=1)
        self.extra = nn.Sequential(nn.Linear(spec.other_dim, cfg.extra_hidden), nn.ReLU())
        self.extra_to_trunk = nn.Linear(cfg.extra_hidden, ch)
        self.blocks = nn.Sequential(*(ResidualBlock(ch) for _ in range(cfg.num_blocks)))

        self.policy_in = nn.Conv2d(ch, len(FOOTPRINT_OFFSETS) * hid, 1)
        self.slot_embed = nn.Linear(SLOT_FEATURES, hid)
        self.policy_out = nn.Linear(hid, 1)
        self.register_buffer(
            "_shift_index", footprint_index(self.rows, self.cols), persistent=False
        )

        self.value = nn.Sequential(
            nn.Linear(2 * ch + cfg.extra_hidden, cfg.value_hidden),
            nn.ReLU(),
            nn.Linear(cfg.value_hidden, 1),
        )

    def forward(self, grid: torch.Tensor, other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.extra(other)  # [B, E]
        x = F.relu(self.stem(grid) + self.extra_to_trunk(emb)[:, :, None, None])
        x = self.blocks(x)  # [B, ch, H, W]

        logits = footprint_logits(
            x,
            other,
            self.num_slots,
            self.policy_in,
            self.slot_embed,
            self.policy_out,
            self._shift_index,
        )
        pooled_trunk = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3)), emb], dim=1)
        value = self.value(pooled_trunk).squeeze(1)
        return logits, value
