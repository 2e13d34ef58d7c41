"""MuZero's network: representation ``h``, dynamics ``g`` and prediction ``f``.

Sizes come from ``ModelConfig`` (``channels``, ``num_blocks``, ``extra_hidden``,
``policy_hidden``, ``value_hidden``; ``ModelConfig.preset("large")`` for a GPU) and the
supports from ``MuZeroConfig``.

- ``h(grid, other) -> s``: the AlphaZero trunk (a 3x3 stem whose channels get a bias from the
  embedded extra features, then ``num_blocks`` residual blocks), so the latent state ``s`` is a
  ``[channels, ROWS, COLS]`` map over the board.
- ``g(s, a) -> (r, s')``: the action as one-hot planes (one per hand slot, a 1 at the anchor
  cell), concatenated to ``s``, a 3x3 convolution and ``num_blocks`` residual blocks. The
  reward (``[muzero] reward_read``) from pooled features of ``s'`` and, with ``"cells"`` (the
  default), from the features of ``s'`` at the cells the placement may cover: the
  ``FOOTPRINT_OFFSETS`` window at the anchor, each offset's channels in its own place of the
  head's input (zeros off the board), times the cell's ``mask`` (1: read; the shape's footprint
  where the hand is known, see ``cell_masks``). Pooled features alone cannot see the action:
  it enters as one anchor cell and is washed out by the convolutions and the pooling
  (``bench/muzero_reward.py`` measures it).
- ``f(s) -> (policy logits, value)``: per slot, a ``(3, 5)`` convolution (it sees the cells a
  shape anchored there can cover) gives one logit per (slot, row, col), which flattens to
  trianglengin's action ids; the value from pooled features. At the root, where the real hand
  is known, ``[muzero] root_policy = "footprint"`` takes the logits from AlphaZero's head
  instead (``network.footprint_logits`` on ``h(o)`` and the hand's footprints:
  ``predict_root``).

With ``[muzero] stochastic`` (Stochastic MuZero, Antonoglou et al., ICLR 2022), the state ``g``
reaches after a move is an *afterstate* ``as``, and where the game deals (after the move that
plays the hand's last piece) two more functions take it to the next state:

- ``psi(as) -> (Q logits, sigma logits [slots, CHANCE_CODES])``: the afterstate's value and a
  distribution per slot over the shape the deal puts there (``deal_codes``);
- ``chance(as, c) -> s'``: the dealt hand ``c`` (each slot's code as ``CHANCE_BITS`` bits) as
  constant planes concatenated to ``as``, a 3x3 convolution and ``num_blocks`` residual blocks.

Where the game does not deal, the afterstate is the next state.

Every latent state is scaled to ``[0, 1]`` per sample (min-max over its entries), as in the
paper, so that unrolled states stay on the scale the prediction was trained on. Values and
rewards are categorical over ``-S..S`` (``alphatriangle.core.muzero.support``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the conventional alias)
from torch import nn
from trianglengin import EnvConfig

from alphatriangle.core.config import ModelConfig, MuZeroConfig
from alphatriangle.core.features import (
    FOOTPRINT_OFFSETS,
    FOOTPRINT_START,
    NUM_GLOBAL_FEATURES,
    SLOT_FEATURES,
    feature_spec,
)
from alphatriangle.core.muzero.support import from_logits
from alphatriangle.core.network import ResidualBlock, footprint_index, footprint_logits


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


WINDOW = len(FOOTPRINT_OFFSETS)
"""Cells the reward reads at an action's anchor (``reward_read = "cells"``)."""
_ROW_PAD = max(dr for dr, _ in FOOTPRINT_OFFSETS)
_COL_PAD = max(abs(dc) for _, dc in FOOTPRINT_OFFSETS)


def window_cells(actions: torch.Tensor, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The cells the reward reads for action ids ``[B]``: ``(row, col)`` int64 ``[B, WINDOW]``
    in the padded map (``rows + _ROW_PAD`` by ``cols + 2 _COL_PAD``, the board at row 0,
    column ``_COL_PAD``), offset ``i`` of ``FOOTPRINT_OFFSETS`` from the anchor in column ``i``."""
    cell = actions % (rows * cols)
    offsets = torch.tensor(FOOTPRINT_OFFSETS, dtype=torch.int64, device=actions.device)
    row = (cell // cols)[:, None] + offsets[None, :, 0]
    col = (cell % cols)[:, None] + offsets[None, :, 1] + _COL_PAD
    return row, col


def cell_masks(
    other: np.ndarray, actions: np.ndarray, depth: np.ndarray | int, action_dim: int
) -> np.ndarray:
    """The window cells the reward reads, float32 ``[B, WINDOW]``, for moves ``actions [B]``
    played ``depth`` moves after a real position with extra features ``other [B, F]`` (0: the
    move at that position): while the position's hand is not used up (``depth`` below the
    shapes it holds), the footprint bits of the action's slot there, the cells the shape
    covers (zeros for an empty slot); after it, every cell of the window, because the game
    deals the next hand at random and nothing in the observation says what it holds.
    ``action_dim`` = slots x ROWS x COLS."""
    other = np.asarray(other, dtype=np.float32)
    actions = np.asarray(actions, dtype=np.int64)
    num_slots = (other.shape[1] - NUM_GLOBAL_FEATURES) // SLOT_FEATURES
    hand = other[:, : num_slots * SLOT_FEATURES : SLOT_FEATURES].sum(axis=1)  # present bits
    start = (actions // (action_dim // num_slots)) * SLOT_FEATURES + FOOTPRINT_START
    footprint = other[np.arange(len(actions))[:, None], start[:, None] + np.arange(WINDOW)]
    known = (np.asarray(depth) < np.rint(hand))[:, None]
    out: np.ndarray = np.where(known, footprint, 1.0).astype(np.float32)
    return out


CHANCE_BITS = 1 + WINDOW
"""A dealt shape's code: its ``anchor_up`` bit and its footprint bits, which fix the shape (the
orientation of every covered triangle follows from the anchor's)."""
CHANCE_CODES = 2**CHANCE_BITS
"""Codes per slot: every combination of the bits (those no shape has learn to get no mass)."""


def deal_codes(other: np.ndarray) -> np.ndarray:
    """The hand in extra features ``other [B, F]`` as int64 ``[B, slots]`` codes: ``anchor_up``
    times ``2 ** WINDOW`` plus footprint bit ``i`` times ``2 ** i`` (0 for an empty slot)."""
    other = np.asarray(other)
    num_slots = (other.shape[1] - NUM_GLOBAL_FEATURES) // SLOT_FEATURES
    blocks = other[:, : num_slots * SLOT_FEATURES].reshape(len(other), num_slots, SLOT_FEATURES)
    bits = np.concatenate(
        [blocks[:, :, FOOTPRINT_START : FOOTPRINT_START + WINDOW], blocks[:, :, 1:2]], axis=2
    )
    out: np.ndarray = (np.rint(bits).astype(np.int64) << np.arange(CHANCE_BITS)).sum(axis=2)
    return out


def code_bits(codes: torch.Tensor) -> torch.Tensor:
    """``[B, slots]`` codes as float ``[B, slots * CHANCE_BITS]`` bits (inverse of the sum in
    ``deal_codes``)."""
    shifts = torch.arange(CHANCE_BITS, device=codes.device)
    return ((codes[:, :, None] >> shifts) & 1).float().flatten(1)


def read_cells(s: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``s [B, ch, H, W]`` at each action's window cells, ``[B, WINDOW * ch]`` (offset-major),
    each cell's channels times ``mask [B, WINDOW]`` (None: all read); zeros off the board."""
    b, _, rows, cols = s.shape
    padded = F.pad(s, (_COL_PAD, _COL_PAD, 0, _ROW_PAD))
    row, col = window_cells(actions, rows, cols)
    batch = torch.arange(b, device=s.device)[:, None]
    cells = padded.permute(0, 2, 3, 1)[batch, row, col]  # [B, WINDOW, ch]
    if mask is not None:
        cells = cells * mask[:, :, None].to(cells.dtype)
    return cells.flatten(1)


class MuZeroNet(nn.Module):
    """``represent``, ``dynamics`` and ``predict``; ``initial`` and ``recurrent`` chain them as
    the search does. Logits are returned for training; ``value``/``reward`` scalars (the
    expectation of the distribution, unsquashed) for the search."""

    _shift_index: torch.Tensor

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
        reward_inputs = 2 * ch + (WINDOW * ch if mz.reward_read == "cells" else 0)
        self.reward_head = nn.Sequential(
            nn.Linear(reward_inputs, cfg.value_hidden),
            nn.ReLU(),
            nn.Linear(cfg.value_hidden, 2 * mz.reward_support + 1),
        )

        if mz.stochastic:
            self.afterstate_value = _pooled_head(ch, cfg.value_hidden, 2 * mz.value_support + 1)
            self.chance_head = nn.Linear(2 * ch, spec.num_slots * CHANCE_CODES)
            self.chance_in = nn.Conv2d(ch + spec.num_slots * CHANCE_BITS, ch, 3, padding=1)
            self.chance_blocks = nn.Sequential(*(ResidualBlock(ch) for _ in range(cfg.num_blocks)))

        self.policy_hidden = nn.Conv2d(ch, cfg.policy_hidden, (3, 5), padding=(1, 2))
        self.policy_out = nn.Conv2d(cfg.policy_hidden, spec.num_slots, 1)
        self.value_head = _pooled_head(ch, cfg.value_hidden, 2 * mz.value_support + 1)
        if mz.root_policy == "footprint":
            hid = cfg.policy_hidden
            self.root_policy_in = nn.Conv2d(ch, len(FOOTPRINT_OFFSETS) * hid, 1)
            self.root_slot_embed = nn.Linear(SLOT_FEATURES, hid)
            self.root_policy_out = nn.Linear(hid, 1)
            self.register_buffer(
                "_shift_index", footprint_index(self.rows, self.cols), persistent=False
            )

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

    def dynamics(
        self, s: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``g``: ``(reward logits [B, 2R + 1], s' [B, ch, H, W])``; ``mask [B, WINDOW]`` the
        window cells the reward reads (None: all of them)."""
        x = F.relu(self.dynamics_in(torch.cat([s, self.action_planes(actions)], dim=1)))
        nxt = scale_latent(self.dynamics_blocks(x))
        features = _pool(nxt)
        if self.muzero_cfg.reward_read == "cells":
            features = torch.cat([features, read_cells(nxt, actions, mask)], dim=1)
        return self.reward_head(features), nxt

    def afterstate_predict(self, afterstate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``psi``: ``(Q logits [B, 2V + 1], sigma logits [B, slots, CHANCE_CODES])``."""
        pooled = _pool(afterstate)
        sigma = self.chance_head(pooled).view(-1, self.num_slots, CHANCE_CODES)
        return self.afterstate_value(pooled), sigma

    def chance(self, afterstate: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """The state after the deal ``codes [B, slots]`` from ``afterstate``."""
        bits = code_bits(codes)[:, :, None, None].expand(-1, -1, self.rows, self.cols)
        x = F.relu(self.chance_in(torch.cat([afterstate, bits], dim=1)))
        return scale_latent(self.chance_blocks(x))

    def predict(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``f``: ``(policy logits [B, A] by action id, value logits [B, 2V + 1])``."""
        policy = self.policy_out(F.relu(self.policy_hidden(s))).flatten(1)
        return policy, self.value_head(_pool(s))

    def predict_root(
        self, s: torch.Tensor, other: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``f`` at a real position with extra features ``other [B, F]``: ``predict``'s, the
        policy from the root head with ``root_policy = "footprint"``."""
        policy, value = self.predict(s)
        if self.muzero_cfg.root_policy == "footprint":
            policy = footprint_logits(
                s,
                other,
                self.num_slots,
                self.root_policy_in,
                self.root_slot_embed,
                self.root_policy_out,
                self._shift_index,
            )
        return policy, value

    def initial(
        self, grid: torch.Tensor, other: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The search's root: ``(s, policy logits, value)``."""
        s = self.represent(grid, other)
        policy, value = self.predict_root(s, other)
        return s, policy, from_logits(value)

    def recurrent(
        self, s: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step in the model: ``(s', reward, policy logits, value)``."""
        reward, nxt = self.dynamics(s, actions, mask)
        policy, value = self.predict(nxt)
        return nxt, from_logits(reward), policy, from_logits(value)
