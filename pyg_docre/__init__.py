"""pyg_docre: document-level relation extraction (DocRE-BSI) on PyTorch Geometric.

``from pyg_docre import RelationExtractor`` gives the one-call interface to a trained model
(:mod:`pyg_docre.extractor`); it is imported on first use, so ``import pyg_docre`` stays light.
"""

__version__ = "0.1.0"

__all__ = ["RelationExtractor", "__version__"]


def __getattr__(name):
    if name == "RelationExtractor":
        from .extractor import RelationExtractor
        return RelationExtractor
    raise AttributeError(f"module 'pyg_docre' has no attribute {name!r}")
