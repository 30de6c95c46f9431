"""pyg_docre: document-level relation extraction (DocRE-BSI) on PyTorch Geometric."""

__version__ = "0.1.0"
