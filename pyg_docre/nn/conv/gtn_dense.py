r"""The dense reference computation of :class:`~pyg_docre.nn.conv.GTNConv`
(``attention="dense"``).

Every attention of the layer written with explicit, masked ``[B, H, L_q, L_k]`` score matrices
over documents padded to the longest one (:func:`~pyg_docre.nn.attention.to_dense_heads`):
quadratic memory, but a literal reading of eq. 1-2 and of the cross attention, against which the
sparse message-passing path is tested (``tests/nn/test_gtn_conv.py``). The layer owns the
projections; the functions here take the projected, head-split tensors and return the heads'
outputs in the node layout (``[N, H, d]``). Same parameters, same results as the sparse path up
to summation order.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.typing import OptTensor

from ..attention import document_sizes, local_positions, masked_softmax, to_dense_heads

__all__ = ["dense_local_heads", "dense_self_attention", "dense_cross_attention"]


def dense_local_heads(query: Tensor, key: Tensor, value: Tensor, edge_index: Tensor,
                      edge_type: Tensor, batch: OptTensor, num_docs: int, need_alpha: bool,
                      dropout: float = 0.0, training: bool = False
                      ) -> Tuple[Tensor, Optional[Tensor]]:
    r"""Edge-type heads (eq. 1) with ``[B, K, N_max, N_max]`` masked score matrices.

    Args:
        query, key, value: ``[N, K, d]``, head :math:`k` of node :math:`i` at ``[i, k]``.
        edge_index, edge_type: ``[2, E]`` and ``[E]``; edge ``e`` belongs to head
            ``edge_type[e]``; a self loop per node and head is added here.
        batch: ``[N]`` sorted document index, ``None`` = one document.
        need_alpha: also return the weights in :meth:`GTNConv.forward`'s column order (input
            edges, then the self loops node-major).

    Returns:
        ``([N, K, d], alpha or None)``.
    """
    N, K, d = query.shape
    q, mask = to_dense_heads(query, batch, num_docs)              # [B, K, Nm, d]
    k, _ = to_dense_heads(key, batch, num_docs)
    v, _ = to_dense_heads(value, batch, num_docs)
    B, Nm = mask.shape
    sizes = document_sizes(batch, N, num_docs, query.device)
    pos = local_positions(batch, sizes, N, query.device)
    doc = batch if batch is not None else torch.zeros_like(pos)
    src, dst = edge_index[0], edge_index[1]
    adj = torch.zeros(B, K, Nm, Nm, dtype=torch.bool, device=query.device)
    adj[doc[dst], edge_type, pos[dst], pos[src]] = True
    diag = torch.arange(Nm, device=query.device)
    adj[:, :, diag, diag] = True                                  # self loops
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    probs = masked_softmax(scores, adj)
    weights = F.dropout(probs, dropout, training)
    out = (weights @ v).transpose(1, 2)[mask]                     # [N, K, d]
    alpha = None
    if need_alpha:
        node = torch.arange(N, device=query.device).repeat_interleave(K)
        head = torch.arange(K, device=query.device).repeat(N)
        alpha = torch.cat([probs[doc[dst], edge_type, pos[dst], pos[src]],
                           probs[doc[node], head, pos[node], pos[node]]])
    return out, alpha


def dense_self_attention(query: Tensor, key: Tensor, value: Tensor, query_batch: OptTensor,
                         key_batch: OptTensor, num_docs: int, dropout: float = 0.0,
                         training: bool = False) -> Tensor:
    """Unmasked heads within documents (the global head, self-attention mode, global cross
    heads): ``[L_q, H, d]`` queries over ``[L_k, H, d]`` keys/values -> ``[L_q, H, d]``."""
    q, q_mask = to_dense_heads(query, query_batch, num_docs)
    k, k_mask = to_dense_heads(key, key_batch, num_docs)
    v, _ = to_dense_heads(value, key_batch, num_docs)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.size(-1))
    probs = masked_softmax(scores, k_mask[:, None, None, :])
    probs = F.dropout(probs, dropout, training)
    return (probs @ v).transpose(1, 2)[q_mask]


def dense_cross_attention(query: Tensor, key: Tensor, value: Tensor, batch: OptTensor,
                          token_batch: OptTensor, token_edge_index: OptTensor, num_docs: int,
                          global_heads: int, local_heads: int, dropout: float = 0.0,
                          training: bool = False) -> Tensor:
    """Cross heads with ``[B, H_c, N_max, T_max]`` masked score matrices: the first
    ``global_heads`` over all tokens of the node's document, the next ``local_heads`` over the
    tokens ``token_edge_index`` links to the node. ``[N, H_c, d_c]`` queries, ``[T, H_c, d_c]``
    keys/values -> ``[N, H_c, d_c]``."""
    N, T, G = query.size(0), key.size(0), global_heads
    q, q_mask = to_dense_heads(query, batch, num_docs)            # [B, H, Nm, dc]
    k, t_mask = to_dense_heads(key, token_batch, num_docs)        # [B, H, Tm, dc]
    v, _ = to_dense_heads(value, token_batch, num_docs)
    B, Nm, Tm = q.size(0), q.size(2), k.size(2)
    masks = []
    if G > 0:
        masks.append(t_mask[:, None, None, :].expand(B, G, Nm, Tm))
    if local_heads > 0:
        assert token_edge_index is not None
        dev = query.device
        node_pos = local_positions(batch, document_sizes(batch, N, num_docs, dev), N, dev)
        tok_pos = local_positions(token_batch,
                                  document_sizes(token_batch, T, num_docs, dev), T, dev)
        tok, node = token_edge_index[0], token_edge_index[1]
        doc = batch[node] if batch is not None else torch.zeros_like(node)
        local = torch.zeros(B, 1, Nm, Tm, dtype=torch.bool, device=dev)
        local[doc, 0, node_pos[node], tok_pos[tok]] = True
        masks.append(local.expand(B, local_heads, Nm, Tm))
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.size(-1))
    probs = masked_softmax(scores, torch.cat(masks, dim=1))
    probs = F.dropout(probs, dropout, training)
    return (probs @ v).transpose(1, 2)[q_mask]
