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
* :func:`document_sizes`, :func:`local_positions` — per-document counts and the position of a
  row inside its document.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.utils import to_dense_batch

__all__ = ["document_sizes", "local_positions", "masked_softmax", "to_dense_heads",
           "document_attention"]


def document_sizes(batch: Optional[Tensor], num_rows: int, num_docs: int,
                   device: torch.device) -> Tensor:
    """``[B]`` number of rows of every document (``batch=None``: one document)."""
    if batch is None:
        return torch.full((1,), num_rows, dtype=torch.long, device=device)
    return torch.bincount(batch, minlength=num_docs)


def local_positions(batch: Optional[Tensor], sizes: Tensor, num_rows: int,
                    device: torch.device) -> Tensor:
    """``[L]`` position of every row inside its document, for a sorted ``batch``."""
    arange = torch.arange(num_rows, device=device)
    if batch is None:
        return arange
    starts = torch.cumsum(sizes, 0) - sizes
    return arange - starts[batch]


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


def document_attention(query: Tensor, key: Tensor, value: Tensor,
                       query_batch: Optional[Tensor], key_batch: Optional[Tensor],
                       num_docs: int, dropout_p: float = 0.0) -> Tensor:
    r"""Multi-head scaled dot-product attention of every query over the keys of its document.

    .. math::
        \mathbf{o}_{i,h} = \sum_{j:\, b(j) = b(i)} \operatorname{softmax}_j\left(
        \frac{\mathbf{q}_{i,h}^\top \mathbf{k}_{j,h}}{\sqrt{d}}\right) \mathbf{v}_{j,h}

    Computed with :func:`~torch.nn.functional.scaled_dot_product_attention` on the padded
    per-document layout. With one document (``num_docs == 1``) no mask is passed at all, so
    PyTorch's flash / memory-efficient kernels apply; otherwise a boolean key-padding mask
    ``[B, 1, 1, L_k]`` is the only mask (PyTorch's fused CPU kernel accepts it, memory stays
    linear). A document without keys gives zero outputs for its queries.

    Args:
        query: ``[L_q, H, d]``.
        key, value: ``[L_k, H, d]``.
        query_batch: ``[L_q]`` sorted document index, or ``None`` (one document).
        key_batch: ``[L_k]`` sorted document index, or ``None`` (one document).
        num_docs: ``B``, the number of documents.
        dropout_p: attention dropout (pass ``0.0`` in evaluation).

    Returns:
        ``[L_q, H, d]``.
    """
    if num_docs == 1:
        if key.size(0) == 0:
            return query.new_zeros(query.shape[:-1] + value.shape[-1:])
        out = F.scaled_dot_product_attention(
            query.transpose(0, 1).unsqueeze(0), key.transpose(0, 1).unsqueeze(0),
            value.transpose(0, 1).unsqueeze(0), dropout_p=dropout_p)
        return out.squeeze(0).transpose(0, 1)

    q, q_mask = to_dense_heads(query, query_batch, num_docs)      # [B, H, Lq, d]
    k, k_mask = to_dense_heads(key, key_batch, num_docs)          # [B, H, Lk, d]
    v, _ = to_dense_heads(value, key_batch, num_docs)
    if k.size(2) == 0:  # no keys in any document
        return query.new_zeros(query.shape[:-1] + value.shape[-1:])
    # A document without keys attends uniformly to its zero padding: zero output, no NaN.
    k_mask = k_mask | ~k_mask.any(dim=1, keepdim=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=k_mask[:, None, None, :],
                                         dropout_p=dropout_p)
    return out.transpose(1, 2)[q_mask]                             # [Lq, H, d]
