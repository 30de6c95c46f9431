"""The heterogeneous document graph (HDG) of a DocRED document, as a PyG ``HeteroData``.

Node types, in this order within each type (see docs/DESIGN.md, tests rely on it):

* ``document``: one node.
* ``mention``: one node per mention in vertexSet order (all mentions of entity 0 in the listed
  order, then entity 1, ...), with ``entity`` (its entity), ``sent`` (its sentence) and
  ``token_index`` (the position of its opening ``*`` marker in the token sequence).
* ``entity``: one node per entity, in vertexSet order.
* ``token``: the document's tokens, with ``input_ids`` and ``sent`` (-1 for special tokens).

Node features are not stored: the model computes them from the encoder (document = ``[CLS]``,
mention = its ``*`` token, entity = logsumexp over its mentions).

Edge types (ordered pairs, both directions stored, no self loops):

=================================================  ==============================================
``('mention', 'intra_entity', 'mention')``         two mentions of the same entity
``('mention', 'intra_entity', 'entity')`` (+ rev.)  a mention and its own entity
``('mention', 'intra_sentence', 'mention')``       mentions of different entities, same sentence
``('entity', 'intra_sentence', 'entity')``         two entities with mentions in a common sentence
``('document', 'document', X)`` (+ reverse)        the document and every mention / entity
``('token', 'in_sentence', X)``                    a token in a sentence where node X occurs
``('entity', 'pair', 'entity')``                   candidate pairs (h, t), h != t, with labels ``y``
=================================================  ==============================================

``y [num_pairs, num_relations + 1]`` is multi-hot; column 0 (TH, "no relation") is set when the
pair has no relation. When batched by PyG's ``DataLoader``, edge indices, ``mention.token_index``
(into the batch's tokens) and ``mention.entity`` (into the batch's entities) are offset;
``mention.sent`` and ``token.sent`` stay sentence ids within their document.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.data.storage import NodeStorage

from .docred import DocREDFormatError, validate_document
from .relations import NO_RELATION
from .tokenization import TokenizedDocument, tokenize_document

__all__ = [
    "BUILDER_VERSION", "NODE_TYPES", "GRAPH_EDGE_TYPES", "TOKEN_EDGE_TYPES", "PAIR_EDGE_TYPE",
    "EDGE_RELATIONS", "DocumentGraph", "build_hdg",
]

#: Bumped whenever the graph a document turns into changes; part of the dataset cache key.
BUILDER_VERSION = 1

NODE_TYPES = ("document", "mention", "entity", "token")

#: The three edge relations of the paper, in the order of the local attention heads
#: (``edge_type`` 0, 1, 2 in the homogeneous view).
EDGE_RELATIONS = ("intra_entity", "intra_sentence", "document")

GRAPH_EDGE_TYPES = (
    ("mention", "intra_entity", "mention"),
    ("mention", "intra_entity", "entity"),
    ("entity", "intra_entity", "mention"),
    ("mention", "intra_sentence", "mention"),
    ("entity", "intra_sentence", "entity"),
    ("document", "document", "mention"),
    ("mention", "document", "document"),
    ("document", "document", "entity"),
    ("entity", "document", "document"),
)
TOKEN_EDGE_TYPES = tuple(("token", "in_sentence", x) for x in ("mention", "entity", "document"))
PAIR_EDGE_TYPE = ("entity", "pair", "entity")

# Node attributes that index other nodes of the same graph, so batching offsets them.
_NODE_INDEX_ATTRS = {("mention", "token_index"): "token", ("mention", "entity"): "entity"}


class DocumentGraph(HeteroData):
    """A ``HeteroData`` that offsets ``mention.token_index`` and ``mention.entity`` on batching."""

    def __inc__(self, key, value, store=None, *args, **kwargs):
        if isinstance(store, NodeStorage) and (store._key, key) in _NODE_INDEX_ATTRS:
            return self[_NODE_INDEX_ATTRS[(store._key, key)]].num_nodes
        return super().__inc__(key, value, store, *args, **kwargs)


def _edge_tensor(pairs: Sequence[tuple[int, int]] | set) -> Tensor:
    if not pairs:
        return torch.empty(2, 0, dtype=torch.long)
    return torch.tensor(sorted(pairs), dtype=torch.long).t().contiguous()


def _ranges(starts: Tensor, lengths: Tensor) -> Tensor:
    """Concatenation of ``arange(s, s + n)`` for each (s, n)."""
    offsets = torch.repeat_interleave(starts - torch.cumsum(lengths, 0) + lengths, lengths)
    return torch.arange(int(lengths.sum()), dtype=torch.long) + offsets


def _token_edges(node_sents: list[list[int]], sent_start: Tensor, sent_len: Tensor) -> Tensor:
    """``[2, E]`` edges token -> node for every token of every sentence in ``node_sents[node]``."""
    nodes, sents = [], []
    for node, node_sent in enumerate(node_sents):
        for s in sorted(set(node_sent)):
            nodes.append(node)
            sents.append(s)
    if not nodes:
        return torch.empty(2, 0, dtype=torch.long)
    sents = torch.tensor(sents, dtype=torch.long)
    lengths = sent_len[sents]
    src = _ranges(sent_start[sents], lengths)
    dst = torch.repeat_interleave(torch.tensor(nodes, dtype=torch.long), lengths)
    return torch.stack([src, dst])


def _label_matrix(doc: dict, num_entities: int, rel2id: Mapping[str, int],
                  pairs: Tensor) -> Tensor:
    y = torch.zeros(pairs.size(1), len(rel2id), dtype=torch.float)
    pair_id = {(int(h), int(t)): i for i, (h, t) in enumerate(pairs.t().tolist())}
    for label in doc.get("labels", []):
        y[pair_id[(label["h"], label["t"])], rel2id[label["r"]]] = 1.0
    y[y.sum(dim=1) == 0, rel2id[NO_RELATION]] = 1.0
    return y


def build_hdg(doc: dict, tokenizer, rel2id: Mapping[str, int], *,
              tokenized: TokenizedDocument | None = None,
              validate: bool = True) -> DocumentGraph:
    """Build the heterogeneous document graph of one DocRED document.

    Args:
        doc: a DocRED document (dict). Validated first unless ``validate=False`` (already done
            by :func:`~pyg_docre.data.docred.load_docred`).
        tokenizer: the encoder's fast tokenizer.
        rel2id: relation P-id -> class id, ``"Na"`` = 0 (``datasets/docred-meta/rel2id.json``).
            A label whose relation is not in it raises :class:`DocREDFormatError`.
        tokenized: the document already tokenized with this tokenizer (optional).

    Returns:
        A :class:`DocumentGraph` with the node and edge types described in the module docstring,
        and graph attributes ``title``, ``annotated`` (whether the document carries labels),
        ``num_prefix_special`` and ``num_suffix_special``.
    """
    if validate:
        validate_document(doc, rel2id=rel2id)
    elif any(label["r"] not in rel2id for label in doc.get("labels", [])):
        bad = next(i for i, label in enumerate(doc["labels"]) if label["r"] not in rel2id)
        raise DocREDFormatError(f"unknown relation {doc['labels'][bad]['r']!r} (not in rel2id)",
                                title=doc.get("title"), field=f"labels[{bad}].r")
    tok = tokenized if tokenized is not None else tokenize_document(doc, tokenizer)

    mention_entity, mention_sent, mention_token = [], [], []
    for e, entity in enumerate(doc["vertexSet"]):
        for m, mention in enumerate(entity):
            mention_entity.append(e)
            mention_sent.append(mention["sent_id"])
            mention_token.append(tok.mention_token_index[e][m])
    num_mentions, num_entities = len(mention_entity), len(doc["vertexSet"])
    num_sents, num_tokens = len(doc["sents"]), len(tok.input_ids)

    data = DocumentGraph()
    data.title = doc["title"]
    data.annotated = "labels" in doc
    data.num_prefix_special = tok.num_prefix_special
    data.num_suffix_special = tok.num_suffix_special
    data["document"].num_nodes = 1
    data["mention"].num_nodes = num_mentions
    data["mention"].entity = torch.tensor(mention_entity, dtype=torch.long)
    data["mention"].sent = torch.tensor(mention_sent, dtype=torch.long)
    data["mention"].token_index = torch.tensor(mention_token, dtype=torch.long)
    data["entity"].num_nodes = num_entities
    data["token"].num_nodes = num_tokens
    data["token"].input_ids = torch.tensor(tok.input_ids, dtype=torch.long)
    data["token"].sent = torch.tensor(tok.token_sent, dtype=torch.long)

    # Graph edges.
    by_entity: dict[int, list[int]] = {}
    by_sent: dict[int, list[int]] = {}
    for i, (e, s) in enumerate(zip(mention_entity, mention_sent)):
        by_entity.setdefault(e, []).append(i)
        by_sent.setdefault(s, []).append(i)
    same_entity = {(i, j) for ms in by_entity.values() for i in ms for j in ms if i != j}
    same_sentence = {(i, j) for ms in by_sent.values() for i in ms for j in ms
                     if mention_entity[i] != mention_entity[j]}
    entity_cooccur = {(mention_entity[i], mention_entity[j]) for i, j in same_sentence}
    mention_to_entity = _edge_tensor([(i, e) for i, e in enumerate(mention_entity)])
    doc_to_mention = _edge_tensor([(0, i) for i in range(num_mentions)])
    doc_to_entity = _edge_tensor([(0, e) for e in range(num_entities)])

    data["mention", "intra_entity", "mention"].edge_index = _edge_tensor(same_entity)
    data["mention", "intra_entity", "entity"].edge_index = mention_to_entity
    data["entity", "intra_entity", "mention"].edge_index = mention_to_entity.flip(0)
    data["mention", "intra_sentence", "mention"].edge_index = _edge_tensor(same_sentence)
    data["entity", "intra_sentence", "entity"].edge_index = _edge_tensor(entity_cooccur)
    data["document", "document", "mention"].edge_index = doc_to_mention
    data["mention", "document", "document"].edge_index = doc_to_mention.flip(0)
    data["document", "document", "entity"].edge_index = doc_to_entity
    data["entity", "document", "document"].edge_index = doc_to_entity.flip(0)

    # Cross-attention edges: tokens of a sentence are contiguous in the token sequence.
    token_sent = data["token"].sent
    sent_len = torch.bincount(token_sent[token_sent >= 0], minlength=num_sents)
    first = torch.full((num_sents,), num_tokens, dtype=torch.long)
    in_text = (token_sent >= 0).nonzero().view(-1)
    first.scatter_reduce_(0, token_sent[in_text], in_text, reduce="amin")
    entity_sents = [[] for _ in range(num_entities)]
    for e, s in zip(mention_entity, mention_sent):
        entity_sents[e].append(s)
    data["token", "in_sentence", "mention"].edge_index = _token_edges(
        [[s] for s in mention_sent], first, sent_len)
    data["token", "in_sentence", "entity"].edge_index = _token_edges(entity_sents, first, sent_len)
    data["token", "in_sentence", "document"].edge_index = torch.stack(
        [in_text, torch.zeros_like(in_text)])

    # Candidate pairs and labels.
    pairs = _edge_tensor([(h, t) for h in range(num_entities) for t in range(num_entities)
                          if h != t])
    data[PAIR_EDGE_TYPE].edge_index = pairs
    data[PAIR_EDGE_TYPE].y = _label_matrix(doc, num_entities, rel2id, pairs)
    return data
