"""The homogeneous view of a (batched) HDG that :class:`~pyg_docre.nn.GTNConv` works on.

The graph nodes (``document``, ``mention``, ``entity``) of every document are laid out
contiguously, document by document, and within a document in the order
``[document, mention_0 .. mention_{M-1}, entity_0 .. entity_{E-1}]``; ``batch`` is therefore
sorted, as PyG's dense helpers (``to_dense_batch``) require. Token nodes stay apart: the layer
attends to them through cross attention.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..nn.attention import document_sizes
from .hdg import EDGE_RELATIONS, GRAPH_EDGE_TYPES, TOKEN_EDGE_TYPES

__all__ = ["GTNInputs", "to_gtn_inputs", "node_ptr", "pair_batch"]

_GRAPH_NODE_TYPES = ("document", "mention", "entity")


@dataclass
class GTNInputs:
    """Tensors of the homogeneous view; ``N`` graph nodes, ``T`` tokens, ``B`` documents.

    Attributes:
        edge_index: ``[2, E]`` source -> target over the ``N`` graph nodes, no self loops.
        edge_type: ``[E]`` 0 = intra_entity, 1 = intra_sentence, 2 = document.
        batch: ``[N]`` document of each node (sorted).
        node_entity: ``[N]`` entity index within its document (a mention's entity, an entity
            itself), -1 for the document node.
        sentence_index: ``[2, S]`` (node, sentence within its document): one pair per mention,
            and for an entity one pair per mention of it.
        token_batch: ``[T]`` document of each token.
        token_edge_index: ``[2, E_t]`` (token, node): the token lies in a sentence where the
            node occurs.
        document_pos, mention_pos, entity_pos: ``[B]``, ``[M]``, ``[E]`` position of every
            document / mention / entity node (in the HDG's order) among the ``N`` nodes.
    """

    edge_index: Tensor
    edge_type: Tensor
    batch: Tensor
    node_entity: Tensor
    sentence_index: Tensor
    token_batch: Tensor
    token_edge_index: Tensor
    document_pos: Tensor
    mention_pos: Tensor
    entity_pos: Tensor

    @property
    def num_nodes(self) -> int:
        return self.batch.numel()

    def to(self, device, non_blocking: bool = False) -> "GTNInputs":
        return GTNInputs(**{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
                            for f in fields(self)})

    def graph_kwargs(self) -> dict[str, Tensor]:
        """The structure arguments of :meth:`GTNConv.forward` (everything but ``x``, ``token_x``)."""
        return dict(edge_index=self.edge_index, edge_type=self.edge_type, batch=self.batch,
                    node_entity=self.node_entity, sentence_index=self.sentence_index,
                    token_batch=self.token_batch, token_edge_index=self.token_edge_index)


def node_ptr(data: HeteroData, node_type: str) -> Tensor:
    """``[B + 1]`` boundaries of each document's ``node_type`` nodes (``[0, n]`` unbatched)."""
    store = data[node_type]
    if "ptr" in store:
        return store.ptr
    device = data["token"].input_ids.device
    return torch.tensor([0, store.num_nodes], device=device)


def pair_batch(pairs: Tensor, entity_ptr: Tensor) -> Tensor:
    """``[P]`` document index of every candidate pair, from its head entity: ``pairs`` is the
    ``[2, P]`` (batched) entity index of the pairs, ``entity_ptr`` the ``[B + 1]``
    :func:`node_ptr` of the entities."""
    return torch.bucketize(pairs[0], entity_ptr[1:], right=True)


def _batch_vector(data: HeteroData, node_type: str) -> Tensor:
    store = data[node_type]
    if "batch" in store:
        return store.batch
    return torch.zeros(store.num_nodes, dtype=torch.long)


def to_gtn_inputs(data: HeteroData) -> GTNInputs:
    """Build the homogeneous view of an HDG or of a batch of HDGs (from PyG's ``DataLoader``)."""
    device = data["mention"].entity.device
    batches = {t: _batch_vector(data, t).to(device) for t in _GRAPH_NODE_TYPES}
    num_docs = data["document"].num_nodes
    # (document_sizes and the sizes of the stores: nothing is read back to the host, which on
    # a GPU would stop it until the device's queue is empty)
    counts = {t: document_sizes(batches[t], batches[t].numel(), num_docs, device)
              for t in _GRAPH_NODE_TYPES}
    starts = {t: torch.cumsum(c, 0) - c for t, c in counts.items()}   # first node of each doc
    per_doc = counts["document"] + counts["mention"] + counts["entity"]
    doc_start = torch.cumsum(per_doc, 0) - per_doc

    pos, offset_in_doc = {}, torch.zeros(num_docs, dtype=torch.long, device=device)
    for t in _GRAPH_NODE_TYPES:
        b = batches[t]
        local = torch.arange(b.numel(), device=device) - starts[t][b]
        pos[t] = doc_start[b] + offset_in_doc[b] + local
        offset_in_doc = offset_in_doc + counts[t]

    num_nodes = sum(batches[t].numel() for t in _GRAPH_NODE_TYPES)
    batch = torch.repeat_interleave(torch.arange(num_docs, device=device), per_doc,
                                    output_size=num_nodes)

    edge_index, edge_type = [], []
    for src, rel, dst in GRAPH_EDGE_TYPES:
        ei = data[src, rel, dst].edge_index
        edge_index.append(torch.stack([pos[src][ei[0]], pos[dst][ei[1]]]))
        edge_type.append(torch.full((ei.size(1),), EDGE_RELATIONS.index(rel), dtype=torch.long,
                                    device=device))

    mention_entity = data["mention"].entity                      # offset into the batch
    node_entity = torch.full((num_nodes,), -1, dtype=torch.long, device=device)
    node_entity[pos["mention"]] = mention_entity - starts["entity"][batches["mention"]]
    node_entity[pos["entity"]] = (torch.arange(batches["entity"].numel(), device=device)
                                  - starts["entity"][batches["entity"]])
    mention_sent = data["mention"].sent
    sentence_index = torch.cat([
        torch.stack([pos["mention"], mention_sent]),
        torch.stack([pos["entity"][mention_entity], mention_sent]),
    ], dim=1)

    token_edge_index = torch.cat([
        torch.stack([data[src, rel, dst].edge_index[0], pos[dst][data[src, rel, dst].edge_index[1]]])
        for src, rel, dst in TOKEN_EDGE_TYPES], dim=1)

    return GTNInputs(
        edge_index=torch.cat(edge_index, dim=1), edge_type=torch.cat(edge_type),
        batch=batch, node_entity=node_entity, sentence_index=sentence_index,
        token_batch=_batch_vector(data, "token").to(device), token_edge_index=token_edge_index,
        document_pos=pos["document"], mention_pos=pos["mention"], entity_pos=pos["entity"])
