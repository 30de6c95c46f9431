"""Neural-network modules: the GTN layer (:class:`GTNConv`) and its stack (:class:`GTN`)."""
from .conv import GTNConv
from .gtn import GTN

__all__ = ["GTNConv", "GTN"]
