"""Scalars as categorical distributions over an integer support (MuZero, appendix F).

Values and rewards are first squashed by the invertible ``h(x) = sign(x) (sqrt(|x| + 1) - 1)
+ eps x``, so that scores of any size land on a small support ``-S..S``; a scalar is then
written as the "two-hot" distribution over the two integers around ``h(x)``, and a predicted
distribution is read back as ``h^-1`` of its expectation.
"""

from __future__ import annotations

import torch

EPS = 0.001
"""The ``eps x`` term keeps ``h`` strictly increasing at any scale (MuZero uses 0.001)."""


def squash(x: torch.Tensor) -> torch.Tensor:
    """``h(x) = sign(x) (sqrt(|x| + 1) - 1) + eps x``."""
    return torch.sign(x) * (torch.sqrt(x.abs() + 1.0) - 1.0) + EPS * x


def unsquash(y: torch.Tensor) -> torch.Tensor:
    """The inverse of ``squash``. With ``u = sqrt(|x| + 1)``, ``|y| = u - 1 + eps (u^2 - 1)`` is
    a quadratic in ``u``: ``u = (sqrt(1 + 4 eps (1 + eps + |y|)) - 1) / (2 eps)``, and
    ``x = sign(y) (u^2 - 1)``."""
    root = (torch.sqrt(1.0 + 4.0 * EPS * (y.abs() + 1.0 + EPS)) - 1.0) / (2.0 * EPS)
    return torch.sign(y) * (root.square() - 1.0)


def to_support(x: torch.Tensor, size: int) -> torch.Tensor:
    """``[...]`` scalars to two-hot ``[..., 2 * size + 1]`` distributions over ``-size..size``
    of ``squash(x)`` (clipped to the support)."""
    y = squash(x).clamp(-size, size)
    low = y.floor()
    upper_weight = y - low
    index = (low + size).long()
    out = torch.zeros(*x.shape, 2 * size + 1, dtype=x.dtype, device=x.device)
    out.scatter_(-1, index.unsqueeze(-1), (1.0 - upper_weight).unsqueeze(-1))
    upper = (index + 1).clamp(max=2 * size).unsqueeze(-1)
    # At the top of the support the upper weight is 0: adding it to the last bin is a no-op.
    out.scatter_add_(-1, upper, upper_weight.unsqueeze(-1))
    return out


def from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Scalars ``[...]`` of distributions given as logits ``[..., 2 * size + 1]``."""
    size = (logits.shape[-1] - 1) // 2
    support = torch.arange(-size, size + 1, dtype=logits.dtype, device=logits.device)
    return unsquash((torch.softmax(logits, dim=-1) * support).sum(dim=-1))
