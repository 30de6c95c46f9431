r"""The structure tensors a :class:`~pyg_docre.nn.conv.GTNConv` derives from its graph inputs.

Everything here depends only on the document graph (edges, batch vectors, entities, sentences),
never on the features, so a stack of layers, and the model's second GTN pass of node
reconstruction, can build it once per batch and share it (:func:`gtn_structure`) instead of
repeating some sixty small index operations in every layer call (on a GPU, one kernel
launch each).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, NamedTuple, Optional

import torch
from torch import Tensor
from torch_geometric.typing import OptTensor
from torch_geometric.utils import add_self_loops, degree

from ..attention import BatchSizes, DocumentLayout, batch_sizes, document_layout

if TYPE_CHECKING:
    from .gtn_conv import GTNConv

__all__ = ["GTNStructure", "gtn_structure", "check_gtn_structure", "resolve_gtn_structure"]


class GTNStructure(NamedTuple):
    r"""Graph-derived inputs of a :class:`~pyg_docre.nn.conv.GTNConv` (see
    :func:`gtn_structure`). Fields a layer's configuration does not use are :obj:`None`."""

    #: the number of documents and the longest document's nodes and tokens
    sizes: BatchSizes
    #: ``[2, E + N K]`` the per-head graph of the local heads: edge ``j -> i`` of type ``k``
    #: becomes ``j K + k -> i K + k``, followed by one self loop per (node, head)
    local_edge_index: OptTensor
    #: the nodes' padded layout (global head, self-attention, global cross heads' queries)
    node_layout: Optional[DocumentLayout]
    #: the tokens' padded layout (keys of the global cross heads)
    token_layout: Optional[DocumentLayout]
    #: ``[N]`` row of :math:`\mathrm{emb}_e` of every node (wrapped; the reserved row for -1)
    entity_row: OptTensor
    #: ``[S]`` row of :math:`\mathrm{emb}_s` of every (node, sentence) pair (wrapped)
    sentence_row: OptTensor
    #: ``[N, 1]`` bool: the node has at least one sentence pair (else the reserved row)
    has_sentence: OptTensor


def gtn_structure(conv: "GTNConv", edge_index: OptTensor = None, edge_type: OptTensor = None,
                  batch: OptTensor = None, node_entity: OptTensor = None,
                  sentence_index: OptTensor = None, token_batch: OptTensor = None,
                  num_nodes: int = 0, num_tokens: int = 0,
                  sizes: Optional[BatchSizes] = None) -> GTNStructure:
    r"""The :class:`GTNStructure` of a batch for layers configured like ``conv`` (same
    :obj:`num_edge_types`, embedding tables, heads and ablation switches).

    Args:
        conv (GTNConv): the layer (or any layer of the stack) the structure is for.
        edge_index, edge_type, batch, node_entity, sentence_index, token_batch: as in
            :meth:`GTNConv.forward`.
        num_nodes (int): :math:`N`.
        num_tokens (int): :math:`T` (0 without cross attention).
        sizes (BatchSizes, optional): the batch's sizes if known on the host; ``None``: read
            back from ``batch`` and ``token_batch`` (:func:`~pyg_docre.nn.attention.batch_sizes`).

    Returns:
        :class:`GTNStructure`; built with no host synchronisation when ``sizes`` is given.
    """
    if sizes is None:
        sizes = batch_sizes(batch, num_nodes, token_batch, num_tokens)
    graph = conv.graph_attention == "graph"

    local_edge_index = None
    if graph:
        assert edge_index is not None and edge_type is not None
        K = conv.num_edge_types
        virtual = torch.stack([edge_index[0] * K + edge_type, edge_index[1] * K + edge_type])
        local_edge_index, _ = add_self_loops(virtual, num_nodes=num_nodes * K)

    node_layout = None
    if conv.global_head or not graph or conv.cross_global_heads > 0:
        node_layout = document_layout(batch, num_nodes, sizes.num_docs, sizes.max_num_nodes)
    token_layout = None
    if conv.cross_global_heads > 0:
        token_layout = document_layout(token_batch, num_tokens, sizes.num_docs,
                                       sizes.max_num_tokens)

    entity_row = sentence_row = has_sentence = None
    if conv.emb_entity is not None:
        assert node_entity is not None and sentence_index is not None
        num_e, num_s = conv.num_entity_embeddings, conv.num_sentence_embeddings
        entity_row = torch.where(node_entity >= 0, node_entity % num_e,
                                 torch.full_like(node_entity, num_e))
        sentence_row = sentence_index[1] % num_s
        has_sentence = (degree(sentence_index[0], num_nodes, dtype=torch.long) > 0).unsqueeze(-1)
    return GTNStructure(sizes, local_edge_index, node_layout, token_layout, entity_row,
                        sentence_row, has_sentence)


def check_gtn_structure(structure: GTNStructure, expected: GTNStructure) -> None:
    """Raise a ``ValueError`` naming the first field of a caller's ``structure`` that differs
    from the one built from the layer's inputs (``expected``); reads both back to the host."""
    if not isinstance(structure, GTNStructure):
        raise ValueError(f"structure must be a GTNStructure (got {type(structure).__name__})")
    for name in GTNStructure._fields:
        given, wanted = getattr(structure, name), getattr(expected, name)
        if isinstance(wanted, DocumentLayout) and isinstance(given, DocumentLayout):
            same = (given.num_docs, given.max_len) == (wanted.num_docs, wanted.max_len) and all(
                _same_tensor(a, b) for a, b in ((given.index, wanted.index),
                                                (given.mask, wanted.mask)))
        elif isinstance(wanted, Tensor) or isinstance(given, Tensor):
            same = _same_tensor(given, wanted)
        else:
            same = (isinstance(given, tuple) and tuple(given) == tuple(wanted)
                    if name == "sizes" else given == wanted)
        if not same:
            raise ValueError(f"structure.{name} does not match the inputs (it was built for "
                             f"another batch or another layer configuration)")


def resolve_gtn_structure(build: Callable[..., GTNStructure], structure: Optional[GTNStructure],
                          check: bool, edge_index: OptTensor = None, edge_type: OptTensor = None,
                          batch: OptTensor = None, node_entity: OptTensor = None,
                          sentence_index: OptTensor = None, token_batch: OptTensor = None,
                          num_nodes: int = 0, num_tokens: int = 0,
                          sizes: Optional[BatchSizes] = None) -> GTNStructure:
    """The structure a forward pass uses: the caller's ``structure`` as given, or one built
    from the inputs by ``build``, the bound ``structure`` method of the module that runs the
    pass (:meth:`GTNConv.structure` or :meth:`~pyg_docre.nn.GTN.structure`), so a subclass of
    either that overrides it changes what ``forward`` builds. ``build`` takes the arguments of
    :func:`gtn_structure` after ``conv``.

    With ``check``, it is always built from the inputs (their sizes read back from ``batch``)
    and a caller's ``structure`` or ``sizes`` must match it (``ValueError`` naming the field);
    without, a given ``structure`` is used unread and ``sizes`` spare the read-back.
    """
    if structure is not None and sizes is not None:
        raise ValueError("pass sizes or structure, not both (a structure holds its sizes)")
    if structure is not None and not check:
        return structure
    built = build(edge_index, edge_type, batch, node_entity, sentence_index, token_batch,
                  num_nodes, num_tokens, None if check else sizes)
    if sizes is not None and tuple(sizes) != tuple(built.sizes):
        raise ValueError(f"sizes={sizes} do not match the batch's {built.sizes}")
    if structure is not None:
        check_gtn_structure(structure, built)
    return built


def _same_tensor(a: OptTensor, b: OptTensor) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and a.device == b.device and bool(torch.equal(a, b))
