"""Random graphs shaped like batched HDGs (docs/DESIGN.md), in the homogeneous view of GTNConv."""
from __future__ import annotations

import random
from dataclasses import dataclass, fields, replace
from types import SimpleNamespace
from typing import Optional

import pytest
import torch

INTRA_ENTITY, INTRA_SENTENCE, DOCUMENT = 0, 1, 2


@dataclass
class GraphInputs:
    """The arguments of ``GTNConv.forward`` (``N`` nodes, ``T`` tokens, ``B`` documents)."""

    x: torch.Tensor                       # [N, C]
    edge_index: torch.Tensor              # [2, E]
    edge_type: torch.Tensor               # [E]
    batch: Optional[torch.Tensor]         # [N] or None
    node_entity: torch.Tensor             # [N]
    sentence_index: torch.Tensor          # [2, S]
    token_x: torch.Tensor                 # [T, C_tok]
    token_batch: Optional[torch.Tensor]   # [T] or None
    token_edge_index: torch.Tensor        # [2, E_t]
    num_sentences: int = 0                # per document, max (for information)
    # Tokens with no token edge (special tokens) and nodes with no edge at all.
    free_tokens: Optional[torch.Tensor] = None
    isolated_nodes: Optional[torch.Tensor] = None

    def args(self) -> dict:
        return dict(x=self.x, edge_index=self.edge_index, edge_type=self.edge_type,
                    batch=self.batch, node_entity=self.node_entity,
                    sentence_index=self.sentence_index, token_x=self.token_x,
                    token_batch=self.token_batch, token_edge_index=self.token_edge_index)

    def replace(self, **changes) -> "GraphInputs":
        return replace(self, **changes)

    def to(self, dtype: torch.dtype) -> "GraphInputs":
        return replace(self, x=self.x.to(dtype), token_x=self.token_x.to(dtype))

    @property
    def num_nodes(self) -> int:
        return self.x.size(0)


def make_document(rng: random.Random, channels: int, token_channels: int, *,
                  max_sentences: int = 4, max_entities: int = 5, max_mentions: int = 3,
                  num_sentences: Optional[int] = None, num_entities: Optional[int] = None,
                  isolated: int = 0, shuffle: bool = False,
                  generator: Optional[torch.Generator] = None) -> GraphInputs:
    """One HDG-shaped document: ``[document, mentions.., entities.., isolated..]`` nodes (then
    shuffled within the document if ``shuffle``), tokens ``[CLS] sent_0 .. sent_{S-1} [SEP]``."""
    S = num_sentences if num_sentences is not None else rng.randint(1, max_sentences)
    E = num_entities if num_entities is not None else rng.randint(1, max_entities)
    sent_len = [rng.randint(2, 5) for _ in range(S)]
    token_sent = [-1] + [s for s in range(S) for _ in range(sent_len[s])] + [-1]
    T = len(token_sent)

    mention_entity, mention_sent = [], []
    for e in range(E):
        for _ in range(rng.randint(1, max_mentions)):
            mention_entity.append(e)
            mention_sent.append(rng.randrange(S))
    M = len(mention_entity)
    doc, mention, entity = 0, list(range(1, M + 1)), list(range(M + 1, M + 1 + E))
    N = 1 + M + E + isolated

    edges = set()
    for i in range(M):
        edges.add((mention[i], entity[mention_entity[i]], INTRA_ENTITY))
        edges.add((entity[mention_entity[i]], mention[i], INTRA_ENTITY))
        edges.add((doc, mention[i], DOCUMENT))
        edges.add((mention[i], doc, DOCUMENT))
        for j in range(M):
            if i == j:
                continue
            if mention_entity[i] == mention_entity[j]:
                edges.add((mention[i], mention[j], INTRA_ENTITY))
            elif mention_sent[i] == mention_sent[j]:
                edges.add((mention[i], mention[j], INTRA_SENTENCE))
                edges.add((entity[mention_entity[i]], entity[mention_entity[j]], INTRA_SENTENCE))
    for e in range(E):
        edges.add((doc, entity[e], DOCUMENT))
        edges.add((entity[e], doc, DOCUMENT))
    edges = sorted(edges)

    node_entity = [-1] + mention_entity + list(range(E)) + [-1] * isolated
    sentence_pairs = ([(mention[i], mention_sent[i]) for i in range(M)]
                      + [(entity[mention_entity[i]], mention_sent[i]) for i in range(M)])
    node_sents = {doc: set(range(S))}
    for i in range(M):
        node_sents.setdefault(mention[i], set()).add(mention_sent[i])
        node_sents.setdefault(entity[mention_entity[i]], set()).add(mention_sent[i])
    token_edges = [(t, node) for node, sents in node_sents.items()
                   for t in range(T) if token_sent[t] in sents]

    perm = list(range(N))
    if shuffle:
        rng.shuffle(perm)   # perm[old] = new
    relabel = torch.tensor(perm, dtype=torch.long)

    edge_index = relabel[torch.tensor([[a, b] for a, b, _ in edges], dtype=torch.long).t()]
    edge_type = torch.tensor([k for _, _, k in edges], dtype=torch.long)
    ne = torch.empty(N, dtype=torch.long)
    ne[relabel] = torch.tensor(node_entity, dtype=torch.long)
    si = torch.tensor(sentence_pairs, dtype=torch.long).t()
    si = torch.stack([relabel[si[0]], si[1]])
    tei = torch.tensor(token_edges, dtype=torch.long).t()
    tei = torch.stack([tei[0], relabel[tei[1]]])
    x = torch.randn(N, channels, generator=generator, dtype=torch.float64)
    token_x = torch.randn(T, token_channels, generator=generator, dtype=torch.float64)
    free_tokens = torch.tensor([t for t in range(T) if token_sent[t] < 0], dtype=torch.long)
    isolated_nodes = relabel[torch.arange(1 + M + E, N, dtype=torch.long)]
    return GraphInputs(x=x, edge_index=edge_index, edge_type=edge_type, batch=None,
                       node_entity=ne, sentence_index=si, token_x=token_x, token_batch=None,
                       token_edge_index=tei, num_sentences=S, free_tokens=free_tokens,
                       isolated_nodes=isolated_nodes)


def collate(docs: list[GraphInputs]) -> GraphInputs:
    """Batch documents the PyG way: concatenate, offset indices, sorted ``batch`` vectors."""
    node_off = token_off = 0
    parts = {f.name: [] for f in fields(GraphInputs)}
    batch, token_batch = [], []
    for b, d in enumerate(docs):
        N, T = d.x.size(0), d.token_x.size(0)
        parts["x"].append(d.x)
        parts["token_x"].append(d.token_x)
        parts["edge_index"].append(d.edge_index + node_off)
        parts["edge_type"].append(d.edge_type)
        parts["node_entity"].append(d.node_entity)
        parts["sentence_index"].append(d.sentence_index + torch.tensor([[node_off], [0]]))
        parts["token_edge_index"].append(d.token_edge_index
                                         + torch.tensor([[token_off], [node_off]]))
        parts["free_tokens"].append(d.free_tokens + token_off)
        parts["isolated_nodes"].append(d.isolated_nodes + node_off)
        batch.append(torch.full((N,), b, dtype=torch.long))
        token_batch.append(torch.full((T,), b, dtype=torch.long))
        node_off, token_off = node_off + N, token_off + T
    cat = {k: torch.cat(v, dim=-1 if k in ("edge_index", "sentence_index", "token_edge_index")
                        else 0) for k, v in parts.items() if v and k != "num_sentences"}
    return GraphInputs(**cat, batch=torch.cat(batch), token_batch=torch.cat(token_batch),
                       num_sentences=max(d.num_sentences for d in docs))


def make_documents(num_docs: int = 3, channels: int = 16, token_channels: int = 12,
                   seed: int = 0, dtype: torch.dtype = torch.float64,
                   **doc_kwargs) -> list[GraphInputs]:
    """``num_docs`` random HDG-shaped documents, each on its own."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    return [make_document(rng, channels, token_channels, generator=gen, **doc_kwargs).to(dtype)
            for _ in range(num_docs)]


def make_batch(num_docs: int = 3, channels: int = 16, token_channels: int = 12, seed: int = 0,
               dtype: torch.dtype = torch.float64, **doc_kwargs) -> GraphInputs:
    """A batch of ``num_docs`` random HDG-shaped documents (features in ``dtype``)."""
    return collate(make_documents(num_docs, channels, token_channels, seed, dtype, **doc_kwargs))


def permute_within_documents(g: GraphInputs, seed: int = 0) -> tuple[GraphInputs, torch.Tensor]:
    """Shuffle the nodes inside every document (and the order of all edge lists).

    Returns the permuted inputs and ``perm`` with ``new.x == g.x[perm]``, so that an equivariant
    layer satisfies ``layer(new) == layer(g)[perm]``.
    """
    gen = torch.Generator().manual_seed(seed)
    N = g.num_nodes
    batch = g.batch if g.batch is not None else torch.zeros(N, dtype=torch.long)
    # Sort by (document, random key): a permutation that keeps documents contiguous.
    key = batch.double() + torch.rand(N, generator=gen, dtype=torch.double) * 0.5
    perm = torch.argsort(key)
    new_id = torch.empty_like(perm)
    new_id[perm] = torch.arange(N)
    e_order = torch.randperm(g.edge_index.size(1), generator=gen)
    s_order = torch.randperm(g.sentence_index.size(1), generator=gen)
    t_order = torch.randperm(g.token_edge_index.size(1), generator=gen)
    new = g.replace(
        x=g.x[perm],
        edge_index=new_id[g.edge_index][:, e_order], edge_type=g.edge_type[e_order],
        node_entity=g.node_entity[perm],
        sentence_index=torch.stack([new_id[g.sentence_index[0]], g.sentence_index[1]])[:, s_order],
        token_edge_index=torch.stack([g.token_edge_index[0],
                                      new_id[g.token_edge_index[1]]])[:, t_order],
        isolated_nodes=None if g.isolated_nodes is None else new_id[g.isolated_nodes])
    return new, perm


@pytest.fixture(scope="session")
def hdg() -> SimpleNamespace:
    """The generator functions of this module, for tests (``hdg.make_batch(...)``)."""
    return SimpleNamespace(GraphInputs=GraphInputs, make_document=make_document,
                           make_documents=make_documents, make_batch=make_batch,
                           collate=collate, permute_within_documents=permute_within_documents)
