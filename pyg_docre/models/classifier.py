r"""Relation classifier with localized context pooling (paper eq. 3-4, after ATLOP).

.. math::
    A_s = \frac{1}{|M_s|}\sum_{m \in M_s} A[m], \qquad
    a_{s,o} = \frac{\mathrm{mean}_\text{heads}(A_s \circ A_o)}{\mathbf 1^T\,\mathrm{mean}_\text{heads}(A_s \circ A_o)},
    \qquad c_{s,o} = H^T a_{s,o}

.. math::
    z_s = \tanh(W_s [F^{(L)}[e_s]; c_{s,o}]), \quad z_o = \tanh(W_o [F^{(L)}[e_o]; c_{s,o}]), \quad
    \mathrm{logits} = W_r \,\mathrm{vec}\big(\{ z_s^{(k)} \otimes z_o^{(k)} \}_{k}\big) + b_r

where :math:`A[m]` is the last-layer attention row of mention :math:`m`'s ``*`` token (per head)
and the bilinear form is grouped into blocks of size ``block_size`` (ATLOP's grouped bilinear).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from pyg_docre.utils import read_back

__all__ = ["localized_context", "GroupedBilinearClassifier", "CHUNK_ELEMENTS"]

#: The largest intermediate a chunk of pairs may take (elements; 2^26 float32 = 256 MB): the
#: ``[pairs, heads, T]`` attention products of long documents and the ``[pairs, d * block]``
#: outer products of documents with many entities are computed in chunks of pairs below it.
#: Rows are independent, so chunking changes no value; a training batch of short documents is
#: one chunk.
CHUNK_ELEMENTS = 2 ** 26


def _pair_chunks(num_pairs: int, elements_per_pair: int, budget: int):
    step = max(1, int(min(budget / max(1, elements_per_pair), max(num_pairs, 1))))
    return [(i, min(i + step, num_pairs)) for i in range(0, num_pairs, step)]


def localized_context(hidden: Tensor, token_ptr: Tensor, mention_attention: list[Tensor],
                      mention_entity: Tensor, entity_ptr: Tensor, pairs: Tensor,
                      pair_batch: Tensor, chunk_elements: int = CHUNK_ELEMENTS,
                      bounds: tuple[list[int], list[int], list[int]] | None = None) -> Tensor:
    """Localized context embeddings ``c [P, d]`` of every candidate pair (eq. 4).

    The pairs of a document are processed in chunks whose ``[chunk, heads, T_b]`` products stay
    under ``chunk_elements``, so a long document with many entities never holds its
    ``[P_b, heads, T_b]`` tensor at once.

    Args:
        hidden: ``[T, d]`` last-layer token states of the batch.
        token_ptr: ``[B + 1]`` token boundaries of the documents.
        mention_attention: per document, ``[M_b, heads, T_b]`` attention rows of its mentions.
        mention_entity: ``[M]`` entity of each mention (offset into the batch's entities).
        entity_ptr: ``[B + 1]`` entity boundaries.
        pairs: ``[2, P]`` (head, tail) entity indices (offset into the batch's entities),
            grouped by document in document order (as PyG's batching leaves them).
        pair_batch: ``[P]`` document of each pair (sorted).
        bounds: the token, entity and pair boundaries (``B + 1`` each) as host lists, when the
            caller has them; by default they are read back to the host, once for the batch (on
            a GPU every read stops the host until the device's queue is empty).
    """
    num_docs = len(mention_attention)
    if bounds is None:
        pair_ptr = torch.searchsorted(pair_batch, torch.arange(num_docs + 1,
                                                               device=pair_batch.device))
        bounds = tuple(read_back([token_ptr, entity_ptr, pair_ptr]))
    tok, ent_ptr, pair_ptr_host = bounds
    context = hidden.new_zeros(pairs.size(1), hidden.size(-1))
    mention_start = 0
    for b, att in enumerate(mention_attention):
        num_m = att.size(0)
        ent = mention_entity[mention_start:mention_start + num_m] - ent_ptr[b]
        mention_start += num_m
        first, last = pair_ptr_host[b], pair_ptr_host[b + 1]
        if first == last:
            continue
        num_e = ent_ptr[b + 1] - ent_ptr[b]
        entity_att = scatter(att, ent, dim=0, dim_size=num_e, reduce="mean")  # [E_b, H, T_b]
        doc_hidden = hidden[tok[b]:tok[b + 1]]                                   # [T_b, d]
        for lo, hi in _pair_chunks(last - first, att.size(1) * att.size(2), chunk_elements):
            ids = torch.arange(first + lo, first + hi, device=pairs.device)
            h = pairs[0, first + lo:first + hi] - ent_ptr[b]
            t = pairs[1, first + lo:first + hi] - ent_ptr[b]
            pair_att = (entity_att[h] * entity_att[t]).mean(dim=1)              # [p, T_b]
            pair_att = pair_att / (pair_att.sum(dim=1, keepdim=True) + 1e-5)
            # (under CUDA autocast the product is bf16/fp16 while ``hidden`` is float32:
            # LayerNorm runs in float32 there)
            context = context.index_copy(0, ids, (pair_att @ doc_hidden).to(context.dtype))
    return context


class GroupedBilinearClassifier(nn.Module):
    """``(head [P, d], tail [P, d], context [P, d]) -> logits [P, num_classes]`` (eq. 3).

    Args:
        channels: entity and context feature size ``d``.
        num_classes: relations + 1 (column 0 = TH).
        emb_size: size of ``z_s``, ``z_o`` (a multiple of ``block_size``).
        block_size: block size of the grouped bilinear layer.
        chunk_elements: pairs are scored in chunks whose ``[chunk, emb_size * block_size]``
            outer products stay under this many elements (values unchanged).
    """

    def __init__(self, channels: int, num_classes: int, emb_size: int, block_size: int = 64,
                 chunk_elements: int = CHUNK_ELEMENTS):
        super().__init__()
        if emb_size % block_size:
            raise ValueError(f"emb_size ({emb_size}) must be a multiple of block_size ({block_size})")
        self.channels, self.num_classes = channels, num_classes
        self.emb_size, self.block_size = emb_size, block_size
        self.chunk_elements = chunk_elements
        self.head_extractor = nn.Linear(2 * channels, emb_size)
        self.tail_extractor = nn.Linear(2 * channels, emb_size)
        self.bilinear = nn.Linear(emb_size * block_size, num_classes)

    def reset_parameters(self) -> None:
        for lin in (self.head_extractor, self.tail_extractor, self.bilinear):
            lin.reset_parameters()

    def forward(self, head: Tensor, tail: Tensor, context: Tensor) -> Tensor:
        z_s = torch.tanh(self.head_extractor(torch.cat([head, context], dim=-1)))
        z_o = torch.tanh(self.tail_extractor(torch.cat([tail, context], dim=-1)))
        chunks = _pair_chunks(z_s.size(0), self.emb_size * self.block_size, self.chunk_elements)
        if len(chunks) > 1:
            return torch.cat([self._bilinear(z_s[lo:hi], z_o[lo:hi]) for lo, hi in chunks])
        return self._bilinear(z_s, z_o)

    def _bilinear(self, z_s: Tensor, z_o: Tensor) -> Tensor:
        # Per block k: z_s^(k) (x) z_o^(k) as a batched [B, 1] @ [1, B] product; its backward is
        # two batched matmuls, about 1.6x faster on the CPU than the broadcast product's
        # multiply-and-reduce (same values).
        outer = torch.bmm(z_s.reshape(-1, self.block_size, 1),
                          z_o.reshape(-1, 1, self.block_size))    # [P * k, B, B]
        return self.bilinear(outer.view(-1, self.emb_size * self.block_size))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, num_classes={self.num_classes}, "
                f"emb_size={self.emb_size}, block_size={self.block_size})")
