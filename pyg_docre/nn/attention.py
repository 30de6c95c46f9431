"""Attention primitives over documents laid out as PyG mini-batches.

Nodes (and tokens) of a mini-batch are stored flat, document after document, with a sorted
``batch`` vector mapping every row to its document (the PyG convention). The helpers below run
attention *within* documents only:

* :func:`document_attention` — dense per document, through
  :func:`torch.nn.functional.scaled_dot_product_attention` (SDPA) on a padded
  ``[B, H, L, d]`` layout built with :func:`torch_geometric.utils.to_dense_batch`. The score
  matrix is never materialised by us: with a single document no mask is passed at all, and with
  several documents only a boolean key-padding mask ``[B, 1, 1, L_k]``, so PyTorch's fused
  (flash / memory-efficient) kernels apply and memory stays linear in the number of rows.
* :func:`masked_softmax` — the explicit softmax over a masked score matrix, used by the
  reference ("dense") computations; a query row without any admissible key gets all-zero weights
  (so a zero message), never NaN.
* :class:`DocumentLayout`, :func:`document_layout`, :func:`layout_attention` — the padded
  layout of a batch built once and the attention on it, for callers (the GTN's layers) that
  attend over the same batches many times.
* :func:`document_sizes`, :func:`local_positions` — per-document counts and the position of a
  row inside its document.
* :class:`BatchSizes`, :func:`batch_sizes` — the number of documents and the longest document's
  rows, read back to the host once per batch, so that the attention calls of every layer need
  no host synchronisation of their own (on a GPU each one stops the host until the device's
  queue is empty).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.utils import degree, to_dense_batch

__all__ = ["document_sizes", "local_positions", "masked_softmax", "to_dense_heads",
           "dense_index", "document_attention", "DocumentLayout", "document_layout",
           "layout_attention", "BatchSizes", "batch_sizes"]


def document_sizes(batch: Optional[Tensor], num_rows: int, num_docs: int,
                   device: torch.device) -> Tensor:
    """``[B]`` number of rows of every document (``batch=None``: one document); no host
    synchronisation (``torch.bincount`` would read the largest index back)."""
    if batch is None:
        return torch.full((1,), num_rows, dtype=torch.long, device=device)
    return degree(batch, num_docs, dtype=torch.long)


def local_positions(batch: Optional[Tensor], sizes: Tensor, num_rows: int,
                    device: torch.device) -> Tensor:
    """``[L]`` position of every row inside its document, for a sorted ``batch``."""
    arange = torch.arange(num_rows, device=device)
    if batch is None:
        return arange
    starts = torch.cumsum(sizes, 0) - sizes
    return arange - starts[batch]


class BatchSizes(NamedTuple):
    """Host-side sizes of a mini-batch of documents (see :func:`batch_sizes`)."""

    num_docs: int           #: B
    max_num_nodes: int      #: rows of the longest document (``batch``)
    max_num_tokens: int     #: tokens of the longest document (``token_batch``)


def batch_sizes(batch: Optional[Tensor], num_nodes: int, token_batch: Optional[Tensor] = None,
                num_tokens: int = 0) -> BatchSizes:
    """The :class:`BatchSizes` of sorted ``batch`` / ``token_batch`` vectors (``None``: one
    document), with two reads back to the host (none for a single document)."""
    if batch is None or num_nodes == 0:
        return BatchSizes(1, num_nodes, num_tokens)
    num_docs = int(batch[-1]) + 1
    longest = [document_sizes(batch, num_nodes, num_docs, batch.device).max()]
    if token_batch is not None and num_tokens > 0:
        longest.append(document_sizes(token_batch, num_tokens, num_docs,
                                      token_batch.device).max())
    maxima = torch.stack(longest).tolist()
    return BatchSizes(num_docs, maxima[0],
                      maxima[1] if len(maxima) > 1 else num_tokens)


def dense_index(batch: Tensor, num_docs: int, max_len: int) -> Tensor:
    """``[L]`` row of every entry in the flattened ``[B * max_len]`` padded layout of a sorted
    ``batch`` (``b * max_len + position in document b``); no host synchronisation."""
    sizes = document_sizes(batch, batch.numel(), num_docs, batch.device)
    return batch * max_len + local_positions(batch, sizes, batch.numel(), batch.device)


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    r"""Softmax over the last dimension restricted to ``mask``.

    .. math::
        \alpha_{ij} = \frac{\mathbb{1}[M_{ij}] \exp(s_{ij})}{\sum_{j'} \mathbb{1}[M_{ij'}]
        \exp(s_{ij'})}, \qquad \alpha_{i\cdot} = 0 \text{ if } M_{i\cdot} = 0.

    Args:
        scores: ``[..., Q, K]`` attention logits.
        mask: boolean, broadcastable to ``scores``; ``True`` = admissible key.

    Returns:
        ``[..., Q, K]`` weights; rows without an admissible key are all zero (not NaN), and no
        NaN reaches the gradient either.
    """
    mask = mask.expand_as(scores)
    has_key = mask.any(dim=-1, keepdim=True)
    scores = scores.masked_fill(~mask, float("-inf")).masked_fill(~has_key, 0.0)
    return torch.softmax(scores, dim=-1).masked_fill(~has_key, 0.0)


def to_dense_heads(x: Tensor, batch: Optional[Tensor], num_docs: int) -> tuple[Tensor, Tensor]:
    """``[L, H, d]`` rows -> ``([B, H, L_max, d], mask [B, L_max])`` (zero padded)."""
    dense, mask = to_dense_batch(x, batch, batch_size=num_docs if batch is not None else None)
    return dense.transpose(1, 2), mask


class DocumentLayout(NamedTuple):
    """Where the rows of a sorted mini-batch sit in the padded ``[B, L_max]`` layout of
    :func:`layout_attention` (see :func:`document_layout`). A layout depends only on the batch
    vector, so the attention calls of every layer of a stack can share one."""

    num_docs: int             #: B
    max_len: int              #: L_max, rows of the longest document
    index: Optional[Tensor]   #: ``[L]`` ``b * L_max + position``; ``None`` for one document
    mask: Optional[Tensor]    #: ``[B, L_max]`` bool key mask (see :func:`document_layout`)


def document_layout(batch: Optional[Tensor], num_rows: int, num_docs: int,
                    max_len: Optional[int] = None) -> DocumentLayout:
    """The :class:`DocumentLayout` of a sorted ``batch`` (``None``: one document).

    ``mask[b, p]`` is ``True`` where document ``b`` has a row at position ``p``; a document
    without any row has an all-``True`` mask, so that as keys its zero padding gives its queries
    zero outputs instead of NaN. ``max_len`` (from :func:`batch_sizes`) avoids a read back to
    the host; ``None``: computed here (one read).
    """
    if batch is None or num_docs == 1:
        return DocumentLayout(1, num_rows, None, None)
    if max_len is None:
        max_len = int(document_sizes(batch, num_rows, num_docs, batch.device).max()) \
            if num_rows else 0
    index = dense_index(batch, num_docs, max_len)
    mask = torch.zeros(num_docs * max_len, dtype=torch.bool, device=batch.device).index_fill(
        0, index, True).view(num_docs, max_len)
    mask = mask | ~mask.any(dim=1, keepdim=True)
    return DocumentLayout(num_docs, max_len, index, mask)


def layout_attention(query: Tensor, key: Tensor, value: Tensor, query_layout: DocumentLayout,
                     key_layout: DocumentLayout, dropout_p: float = 0.0) -> Tensor:
    r""":func:`document_attention` on precomputed :class:`DocumentLayout` s (no host
    synchronisation, and none of the layout's index operations repeated).

    Args:
        query: ``[L_q, H, d]``, laid out by ``query_layout``.
        key, value: ``[L_k, H, d]``, laid out by ``key_layout`` (same documents).
        dropout_p: attention dropout (pass ``0.0`` in evaluation).

    Returns:
        ``[L_q, H, d]``.
    """
    if query_layout.num_docs == 1:
        if key.size(0) == 0:
            return query.new_zeros(query.shape[:-1] + value.shape[-1:])
        out = F.scaled_dot_product_attention(
            query.transpose(0, 1).unsqueeze(0), key.transpose(0, 1).unsqueeze(0),
            value.transpose(0, 1).unsqueeze(0), dropout_p=dropout_p)
        return out.squeeze(0).transpose(0, 1)

    B, Lq, Lk = query_layout.num_docs, query_layout.max_len, key_layout.max_len
    if Lk == 0:  # no keys in any document
        return query.new_zeros(query.shape[:-1] + value.shape[-1:])
    q_index, k_index, k_mask = query_layout.index, key_layout.index, key_layout.mask
    assert q_index is not None and k_index is not None and k_mask is not None
    q = query.new_zeros((B * Lq,) + query.shape[1:]).index_copy(0, q_index, query)
    k = key.new_zeros((B * Lk,) + key.shape[1:]).index_copy(0, k_index, key)
    v = value.new_zeros((B * Lk,) + value.shape[1:]).index_copy(0, k_index, value)
    out = F.scaled_dot_product_attention(                          # [B, H, Lq, d]
        q.view(B, Lq, *query.shape[1:]).transpose(1, 2),
        k.view(B, Lk, *key.shape[1:]).transpose(1, 2),
        v.view(B, Lk, *value.shape[1:]).transpose(1, 2),
        attn_mask=k_mask[:, None, None, :], dropout_p=dropout_p)
    return out.transpose(1, 2).reshape(B * Lq, out.size(1), out.size(3))[q_index]


def document_attention(query: Tensor, key: Tensor, value: Tensor,
                       query_batch: Optional[Tensor], key_batch: Optional[Tensor],
                       num_docs: int, dropout_p: float = 0.0,
                       max_query_len: Optional[int] = None,
                       max_key_len: Optional[int] = None) -> Tensor:
    r"""Multi-head scaled dot-product attention of every query over the keys of its document.

    .. math::
        \mathbf{o}_{i,h} = \sum_{j:\, b(j) = b(i)} \operatorname{softmax}_j\left(
        \frac{\mathbf{q}_{i,h}^\top \mathbf{k}_{j,h}}{\sqrt{d}}\right) \mathbf{v}_{j,h}

    Computed with :func:`~torch.nn.functional.scaled_dot_product_attention` on the padded
    per-document layout. With one document (``num_docs == 1``) no mask is passed at all, so
    PyTorch's flash / memory-efficient kernels apply; otherwise a boolean key-padding mask
    ``[B, 1, 1, L_k]`` is the only mask (PyTorch's fused CPU kernel accepts it, memory stays
    linear). A document without keys gives zero outputs for its queries. Callers that attend
    over the same batches several times build the layouts once (:func:`document_layout`) and
    call :func:`layout_attention`.

    Args:
        query: ``[L_q, H, d]``.
        key, value: ``[L_k, H, d]``.
        query_batch: ``[L_q]`` sorted document index, or ``None`` (one document).
        key_batch: ``[L_k]`` sorted document index, or ``None`` (one document).
        num_docs: ``B``, the number of documents.
        dropout_p: attention dropout (pass ``0.0`` in evaluation).
        max_query_len, max_key_len: the longest document's queries and keys (from
            :func:`batch_sizes`); with both given the call reads nothing back to the host.
            ``None``: computed here (one read each).

    Returns:
        ``[L_q, H, d]``.
    """
    if num_docs != 1:
        assert query_batch is not None and key_batch is not None
    return layout_attention(
        query, key, value,
        document_layout(query_batch, query.size(0), num_docs, max_query_len),
        document_layout(key_batch, key.size(0), num_docs, max_key_len), dropout_p)
