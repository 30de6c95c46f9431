"""Message-passing layers."""
from .gtn_conv import GTNConv

__all__ = ["GTNConv"]
