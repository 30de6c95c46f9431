"""Data: DocRED files, tokenization with entity markers, HDGs as ``HeteroData``, datasets."""
from .docred import DocREDFormatError, load_docred, validate_document, validate_documents
from .relations import NO_RELATION, id2rel, load_rel2id, load_rel_info
from .tokenization import MARKER, TokenizedDocument, tokenize_document
from .hdg import (BUILDER_VERSION, EDGE_RELATIONS, GRAPH_EDGE_TYPES, NODE_TYPES, PAIR_EDGE_TYPE,
                  TOKEN_EDGE_TYPES, DocumentGraph, build_hdg)
from .view import GTNInputs, node_ptr, pair_batch, to_gtn_inputs
from .dataset import DocREDDataset, parse_doc_range, tokenizer_fingerprint

__all__ = [
    "DocREDFormatError", "load_docred", "validate_document", "validate_documents",
    "NO_RELATION", "id2rel", "load_rel2id", "load_rel_info",
    "MARKER", "TokenizedDocument", "tokenize_document",
    "BUILDER_VERSION", "EDGE_RELATIONS", "GRAPH_EDGE_TYPES", "NODE_TYPES", "PAIR_EDGE_TYPE",
    "TOKEN_EDGE_TYPES", "DocumentGraph", "build_hdg",
    "GTNInputs", "node_ptr", "pair_batch", "to_gtn_inputs",
    "DocREDDataset", "parse_doc_range", "tokenizer_fingerprint",
]
