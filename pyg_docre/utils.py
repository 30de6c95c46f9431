"""Small utilities shared across the package."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torch_geometric import seed_everything

__all__ = ["set_seed", "read_back"]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices): :func:`torch_geometric.seed_everything`."""
    seed_everything(seed)


def read_back(parts: Sequence[Tensor]) -> list[list[int]]:
    """Integer tensors (any shape, one device) as flat lists of ints, in one copy to the host.

    On a GPU every read back stops the host until the device's queue is empty; reading several
    tensors together costs one such wait instead of one each.
    """
    if not parts:
        return []
    values = torch.cat([t.reshape(-1).long() for t in parts]).tolist()
    out, start = [], 0
    for t in parts:
        out.append(values[start:start + t.numel()])
        start += t.numel()
    return out
