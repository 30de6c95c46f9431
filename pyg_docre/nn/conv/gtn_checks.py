"""Checks of :class:`~pyg_docre.nn.conv.GTNConv` and :class:`~pyg_docre.nn.GTN`, each error
naming the argument:

* :func:`check_gtn_arguments`: the constructor arguments (the one place they are validated: the
  layer, the stack, the ``attention`` setter and the ``model.gtn`` config section call it);
* :func:`check_message_passing_kwargs`: the keyword arguments a layer passes on to
  :class:`~torch_geometric.nn.conv.MessagePassing` (a misspelt layer argument is named, not
  reported from inside PyG);
* :func:`check_gtn_inputs`: the forward inputs (shapes, dtypes, index ranges, sorted batches,
  edges that stay inside their document).
"""
from __future__ import annotations

import inspect
from typing import Iterable, Optional

import torch
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import OptTensor

__all__ = ["GTNArgumentError", "ATTENTION_MODES", "GRAPH_ATTENTION_MODES",
           "check_gtn_arguments", "check_message_passing_kwargs", "check_gtn_inputs"]

ATTENTION_MODES = ("sparse", "dense")
GRAPH_ATTENTION_MODES = ("graph", "self")


class GTNArgumentError(ValueError):
    """An invalid constructor argument of :class:`GTNConv` / :class:`GTN`; :attr:`argument`
    names it (the config maps it to ``model.gtn.<argument>``)."""

    def __init__(self, argument: str, message: str):
        super().__init__(message)
        self.argument = argument


def check_gtn_arguments(channels: Optional[int] = None, *, num_layers: int = 1,
                        num_edge_types: int = 3, cross_heads: int = 4,
                        num_entity_embeddings: int = 64, num_sentence_embeddings: int = 64,
                        dropout: float = 0.0, attention: str = "sparse",
                        graph_attention: str = "graph", cross_attention: bool = True,
                        cross_local: bool = True, cross_global: bool = True,
                        cross_chunk_edges: Optional[int] = 1, **_ignored) -> None:
    """Raise a :class:`GTNArgumentError` for the first invalid argument.

    ``channels=None`` skips the checks that need the feature size (divisibility by the heads):
    that is how the config checks its ``model.gtn`` section before the encoder is known.
    Arguments that need no check (``global_head``, ``bias``, ...) are accepted and ignored.
    """
    def fail(argument: str, message: str):
        raise GTNArgumentError(argument, message)

    if num_layers < 1:
        fail("num_layers", f"num_layers must be >= 1 (got {num_layers})")
    if num_edge_types < 1:
        fail("num_edge_types", f"num_edge_types must be >= 1 (got {num_edge_types})")
    if channels is not None and channels % (num_edge_types + 1) != 0:
        fail("channels", f"channels ({channels}) must be divisible by num_edge_types + 1 "
                         f"({num_edge_types + 1}), the number of graph-attention heads")
    if attention not in ATTENTION_MODES:
        fail("attention", f"attention must be one of {ATTENTION_MODES} (got {attention!r})")
    if graph_attention not in GRAPH_ATTENTION_MODES:
        fail("graph_attention", f"graph_attention must be one of {GRAPH_ATTENTION_MODES} "
                                f"(got {graph_attention!r})")
    if not 0.0 <= dropout <= 1.0:
        fail("dropout", f"dropout must be in [0, 1] (got {dropout})")
    if cross_chunk_edges is not None and cross_chunk_edges < 1:
        fail("cross_chunk_edges",
             f"cross_chunk_edges must be >= 1 or None (got {cross_chunk_edges})")
    for argument, value in (("num_entity_embeddings", num_entity_embeddings),
                            ("num_sentence_embeddings", num_sentence_embeddings)):
        if value < 1:
            fail(argument, "num_entity_embeddings and num_sentence_embeddings must be >= 1")
    if cross_attention:
        if not (cross_local or cross_global):
            fail("cross_local", "cross_local=False and cross_global=False leave no cross head; "
                                "use cross_attention=False to drop the sublayer")
        if cross_heads < 1:
            fail("cross_heads", f"cross_heads must be >= 1 (got {cross_heads})")
        if channels is not None and channels % cross_heads != 0:
            fail("cross_heads", f"channels ({channels}) must be divisible by cross_heads "
                                f"({cross_heads})")
        if cross_local and cross_global and cross_heads % 2 != 0:
            fail("cross_heads", f"cross_heads ({cross_heads}) must be even to split into "
                                f"global and local halves")


def check_message_passing_kwargs(layer: str, own_arguments: Iterable[str], kwargs: dict,
                                 fixed: Iterable[str] = ("node_dim",)) -> None:
    """Raise a :class:`TypeError` (as Python does for an unexpected keyword) when ``kwargs``,
    the keywords a layer passes on to :class:`~torch_geometric.nn.conv.MessagePassing`, hold one
    that ``MessagePassing`` does not take or that the layer sets itself (``fixed``); the message
    lists the layer's ``own_arguments`` and what it passes on."""
    passed_on = [name for name in inspect.signature(MessagePassing.__init__).parameters
                 if name != "self" and name not in fixed]
    for name in kwargs:
        if name not in passed_on:
            what = (f"the keyword argument {name!r}, which it sets itself" if name in fixed
                    else f"an unexpected keyword argument {name!r}")
            raise TypeError(
                f"{layer}() got {what}; its arguments are "
                f"{', '.join(a for a in own_arguments if a not in ('self', 'kwargs'))}, and it "
                f"passes {', '.join(passed_on)} on to MessagePassing")


def check_gtn_inputs(conv, x: Tensor, edge_index: OptTensor, edge_type: OptTensor,
              batch: OptTensor, node_entity: OptTensor, sentence_index: OptTensor,
              token_x: OptTensor, token_batch: OptTensor,
              token_edge_index: OptTensor) -> None:
    """Raise a ``ValueError`` naming the argument for any input of ``conv`` outside its contract.

    Reads tensors back to the host (about a dozen synchronisations), so
    :meth:`GTNConv.forward` runs it only when asked (``check_inputs``), and the
    :class:`~pyg_docre.nn.GTN` stack once per call, not once per layer.
    """
    name = conv.__class__.__name__
    if x.dim() != 2 or x.size(1) != conv.channels:
        raise ValueError(f"{name}: x must have shape [N, {conv.channels}] "
                         f"(got {list(x.shape)})")
    N = x.size(0)

    def check_index(t: Tensor, arg: str, shape: list) -> None:
        if t.dtype != torch.long:
            raise ValueError(f"{name}: {arg} must be a long tensor (got {t.dtype})")
        if list(t.shape) != shape:
            raise ValueError(f"{name}: {arg} must have shape {shape} (got {list(t.shape)})")

    def check_batch(b: Tensor, arg: str, rows: int) -> None:
        check_index(b, arg, [rows])
        if rows and int(b.min()) < 0:
            raise ValueError(f"{name}: {arg} has negative document indices")
        if rows > 1 and bool((b[1:] < b[:-1]).any()):
            raise ValueError(f"{name}: {arg} must be sorted ascending (the nodes / tokens of "
                             f"each document contiguous, as PyG batches them)")

    def check_range(t: Tensor, arg: str, high: int, low: int = 0) -> None:
        if t.numel() and (int(t.min()) < low or int(t.max()) >= high):
            raise ValueError(f"{name}: {arg} must lie in [{low}, {high}) "
                             f"(got values in [{int(t.min())}, {int(t.max())}])")

    if batch is not None:
        check_batch(batch, "batch", N)
    num_docs = 1 if batch is None or N == 0 else int(batch[-1]) + 1

    def same_doc(a: Tensor, b_of_a: OptTensor, c: Tensor, b_of_c: OptTensor, arg: str):
        if b_of_a is None and b_of_c is None:
            return
        da = b_of_a[a] if b_of_a is not None else torch.zeros_like(a)
        dc = b_of_c[c] if b_of_c is not None else torch.zeros_like(c)
        if bool((da != dc).any()):
            raise ValueError(f"{name}: {arg} connects rows of different documents")

    if conv.graph_attention == "graph":
        if edge_index is None or edge_type is None:
            raise ValueError(f"{name}: edge_index and edge_type are required with "
                             f"graph_attention='graph'")
        check_index(edge_index, "edge_index", [2, edge_index.size(-1)])
        check_index(edge_type, "edge_type", [edge_index.size(1)])
        check_range(edge_index, "edge_index", N)
        check_range(edge_type, "edge_type", conv.num_edge_types)
        if bool((edge_index[0] == edge_index[1]).any()):
            raise ValueError(f"{name}: edge_index contains self loops; the layer adds one "
                             f"self loop per node and head itself (remove them, e.g. with "
                             f"torch_geometric.utils.remove_self_loops)")
        same_doc(edge_index[0], batch, edge_index[1], batch, "edge_index")
        if conv.global_head:
            if node_entity is None or sentence_index is None:
                raise ValueError(f"{name}: node_entity and sentence_index are required by "
                                 f"the global head (eq. 2); pass them or use "
                                 f"global_head=False")
            check_index(node_entity, "node_entity", [N])
            if N and int(node_entity.min()) < -1:
                raise ValueError(f"{name}: node_entity must be >= -1 (-1 = no entity)")
            check_index(sentence_index, "sentence_index", [2, sentence_index.size(-1)])
            check_range(sentence_index[0], "sentence_index[0] (node)", N)
            if sentence_index.size(1) and int(sentence_index[1].min()) < 0:
                raise ValueError(f"{name}: sentence_index[1] (sentence) must be >= 0")

    if conv.cross_attention:
        if token_x is None:
            raise ValueError(f"{name}: token_x is required with cross attention "
                             f"(or construct the layer with cross_attention=False)")
        if token_x.dim() != 2 or token_x.size(1) != conv.token_channels:
            raise ValueError(f"{name}: token_x must have shape [T, {conv.token_channels}] "
                             f"(got {list(token_x.shape)})")
        if token_x.dtype != x.dtype:
            raise ValueError(f"{name}: token_x must have the dtype of x ({x.dtype}, got "
                             f"{token_x.dtype})")
        T = token_x.size(0)
        if token_batch is not None:
            check_batch(token_batch, "token_batch", T)
            if T and int(token_batch[-1]) >= num_docs:
                raise ValueError(f"{name}: token_batch refers to document "
                                 f"{int(token_batch[-1])} but batch has {num_docs}")
        elif num_docs > 1:
            raise ValueError(f"{name}: token_batch is required when batch holds several "
                             f"documents")
        if conv.cross_local:
            if token_edge_index is None:
                raise ValueError(f"{name}: token_edge_index is required by the local cross "
                                 f"heads (or construct the layer with cross_local=False)")
            check_index(token_edge_index, "token_edge_index",
                        [2, token_edge_index.size(-1)])
            check_range(token_edge_index[0], "token_edge_index[0] (token)", T)
            check_range(token_edge_index[1], "token_edge_index[1] (node)", N)
            same_doc(token_edge_index[0], token_batch, token_edge_index[1], batch,
                     "token_edge_index")
