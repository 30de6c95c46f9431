"""The DocRE-BSI model (and the ATLOP baseline on the same code path)."""
from .checkpoint import CheckpointError
from .classifier import GroupedBilinearClassifier, localized_context
from .docre_model import DocREModel, DocREOutput
from .features import node_features, scatter_logsumexp

__all__ = ["CheckpointError", "DocREModel", "DocREOutput", "GroupedBilinearClassifier", "localized_context",
           "node_features", "scatter_logsumexp"]
