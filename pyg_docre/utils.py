"""Small utilities shared across the package."""
from __future__ import annotations

from torch_geometric import seed_everything

__all__ = ["set_seed"]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices): :func:`torch_geometric.seed_everything`."""
    seed_everything(seed)
