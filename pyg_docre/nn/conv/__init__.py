"""Message-passing layers."""
from .gtn_conv import GTNConv
from .gtn_structure import GTNStructure

__all__ = ["GTNConv", "GTNStructure"]
