r"""The GTN layer workload shared by ``sparse_vs_dense.py`` and ``profile_layer.py``.

* Long documents: ``k`` real Re-DocRED documents concatenated into one
  (:func:`concatenate_documents`), its HDG joined from the parts' graphs (:func:`join_graphs`,
  see ``sparse_vs_dense.py`` for why), the pool they are drawn from (:class:`DocumentPool`) and
  the layer's structure tensors and sizes (:func:`view_and_counts`).
* Memory estimates (conservative; used to skip points that cannot fit): :func:`estimate_bytes`,
  :func:`plan_point`.
* The measured layer and its random inputs: :func:`layer_and_inputs`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import _common  # noqa: E402  (puts the repository root on sys.path too)
from _common import MB  # noqa: E402

import torch  # noqa: E402

#: The Re-DocRED files long documents are drawn from, in order.
POOL_FILES = ("dev_revised.json", "test_revised.json")
#: Mode name -> (GTNConv attention, use torch-scatter). Sparse without torch-scatter: the child
#: sets ``torch_geometric.typing.WITH_TORCH_SCATTER = False``, which PyG's ``scatter``,
#: ``softmax`` and ``segment`` read at call time.
MODES = {"sparse": ("sparse", True), "sparse-no-scatter": ("sparse", False),
         "dense": ("dense", True)}


# ==============================================================================================
# Long documents
# ==============================================================================================
def concatenate_documents(docs: Sequence[dict], title: Optional[str] = None) -> dict:
    """One DocRED document made of ``docs`` in order: sentences, entities (``sent_id``
    shifted) and labels (``h``, ``t``, ``evidence`` shifted) one after the other."""
    sents, vertex_set, labels = [], [], []
    sent_offset = entity_offset = 0
    for doc in docs:
        sents.extend(doc["sents"])
        for entity in doc["vertexSet"]:
            vertex_set.append([{**m, "sent_id": m["sent_id"] + sent_offset} for m in entity])
        for label in doc.get("labels", []):
            labels.append({**label, "h": label["h"] + entity_offset,
                           "t": label["t"] + entity_offset,
                           "evidence": [e + sent_offset for e in label.get("evidence", [])]})
        sent_offset += len(doc["sents"])
        entity_offset += len(doc["vertexSet"])
    out = {"title": title or f"concatenation of {len(docs)} documents", "sents": sents,
           "vertexSet": vertex_set}
    if any("labels" in doc for doc in docs):
        out["labels"] = labels
    return out


def join_graphs(graphs: Sequence, num_sentences: Sequence[int], title: str):
    """The HDG of the concatenation of the documents whose ``build_hdg`` graphs are ``graphs``
    (with ``num_sentences[i]`` sentences each), without candidate pairs.

    Mentions, entities, sentences and tokens are offset part by part; the document nodes become
    one; the token sequence keeps the first part's prefix special tokens, the text tokens of every
    part, and its suffix special tokens (a fast tokenizer with pre-split words tokenizes every
    word on its own, so this is the tokenization of the concatenated document).
    """
    from pyg_docre.data import GRAPH_EDGE_TYPES, TOKEN_EDGE_TYPES, DocumentGraph

    if not graphs:
        raise ValueError("join_graphs needs at least one graph")
    prefix, suffix = int(graphs[0].num_prefix_special), int(graphs[0].num_suffix_special)
    first_ids = graphs[0]["token"].input_ids
    edge_types = GRAPH_EDGE_TYPES + TOKEN_EDGE_TYPES
    cols = {key: [] for key in ("entity", "sent", "token_index", "input_ids", "token_sent")}
    edges = {et: [] for et in edge_types}
    offset = {"document": 0, "mention": 0, "entity": 0, "token": 0, "sent": 0}
    for graph, sents in zip(graphs, num_sentences, strict=True):
        if (int(graph.num_prefix_special), int(graph.num_suffix_special)) != (prefix, suffix):
            raise ValueError(f"{graph.title!r} was tokenized with other special tokens")
        num_tokens = graph["token"].num_nodes
        body = slice(prefix, num_tokens - suffix)
        # A body token t of this part lands at t + offset["token"] in the long sequence.
        cols["entity"].append(graph["mention"].entity + offset["entity"])
        cols["sent"].append(graph["mention"].sent + offset["sent"])
        cols["token_index"].append(graph["mention"].token_index + offset["token"])
        cols["input_ids"].append(graph["token"].input_ids[body])
        cols["token_sent"].append(graph["token"].sent[body] + offset["sent"])
        for et in edge_types:
            shift = torch.tensor([[offset[et[0]]], [offset[et[2]]]])
            edges[et].append(graph[et].edge_index + shift)
        offset["mention"] += graph["mention"].num_nodes
        offset["entity"] += graph["entity"].num_nodes
        offset["sent"] += sents
        offset["token"] += num_tokens - prefix - suffix

    special = torch.full((1,), -1, dtype=torch.long)
    data = DocumentGraph()
    data.title = title
    data.annotated = False
    data.num_prefix_special, data.num_suffix_special = prefix, suffix
    data["document"].num_nodes = 1
    data["mention"].num_nodes = offset["mention"]
    data["mention"].entity = torch.cat(cols["entity"])
    data["mention"].sent = torch.cat(cols["sent"])
    data["mention"].token_index = torch.cat(cols["token_index"])
    data["entity"].num_nodes = offset["entity"]
    input_ids = torch.cat([first_ids[:prefix], *cols["input_ids"],
                           first_ids[len(first_ids) - suffix:]])
    data["token"].num_nodes = input_ids.numel()
    data["token"].input_ids = input_ids
    data["token"].sent = torch.cat([special.expand(prefix), *cols["token_sent"],
                                    special.expand(suffix)])
    for et in edge_types:
        data[et].edge_index = torch.cat(edges[et], dim=1)
    return data


class DocumentPool:
    """Real documents to concatenate, with their ``build_hdg`` graphs built once, on demand.

    Part ``i`` of a long document is ``docs[i % len(docs)]``.
    """

    def __init__(self, docs: Sequence[dict], tokenizer, rel2id: dict):
        if not docs:
            raise ValueError("the document pool is empty")
        self.docs, self.tokenizer, self.rel2id = list(docs), tokenizer, rel2id
        self._graphs: dict[int, object] = {}

    @classmethod
    def load(cls) -> "DocumentPool":
        """Re-DocRED dev then test (1,000 documents), MiniLM tokenizer."""
        rel2id = _common.load_rel2id()
        docs = [d for name in POOL_FILES for d in _common.load_documents(name, rel2id)]
        return cls(docs, _common.load_tokenizer(), rel2id)

    def documents(self, k: int) -> list[dict]:
        return [self.docs[i % len(self.docs)] for i in range(k)]

    def _graph(self, i: int):
        from pyg_docre.data import build_hdg
        i %= len(self.docs)
        if i not in self._graphs:
            self._graphs[i] = build_hdg(self.docs[i], self.tokenizer, self.rel2id,
                                        validate=False)
        return self._graphs[i]

    def long_document(self, k: int):
        """The HDG (without candidate pairs) of the concatenation of the first ``k`` parts."""
        if k < 1:
            raise ValueError(f"k must be >= 1 (got {k})")
        graphs = [self._graph(i) for i in range(k)]
        sents = [len(doc["sents"]) for doc in self.documents(k)]
        return join_graphs(graphs, sents, title=f"concatenation of {k} Re-DocRED documents")


def view_and_counts(graph, k: int) -> tuple[dict, dict]:
    """The layer's structure arguments (``GTNInputs.graph_kwargs()``) and the point's sizes."""
    from pyg_docre.data import to_gtn_inputs

    view = to_gtn_inputs(graph)
    sentences = graph["token"].sent
    counts = {
        "k": k,
        "num_nodes": view.num_nodes,
        "num_edges": view.edge_index.size(1),
        "num_token_edges": view.token_edge_index.size(1),
        "num_tokens": graph["token"].num_nodes,
        "num_mentions": graph["mention"].num_nodes,
        "num_entities": graph["entity"].num_nodes,
        "num_sentences": int(sentences.max()) + 1 if sentences.numel() else 0,
    }
    return view.graph_kwargs(), counts


# ==============================================================================================
# Memory estimates (conservative; used to skip points that cannot fit)
# ==============================================================================================
@dataclass(frozen=True)
class LayerShape:
    """The heads of a default ``GTNConv`` (what the dense score tensors depend on)."""

    graph_heads: int = 4        # three edge-type heads + the global head
    cross_heads: int = 4


#: The sparse local cross heads run over chunks of at most this many token edges
#: (``GTNConv(cross_chunk_edges=...)``, its default; ``--cross-chunk-edges``).
CROSS_CHUNK_EDGES = 2 ** 19
#: Sparse: bytes per (edge x channel) over the edges whose per-edge rows are alive at once,
#: ``E_live = min(E_t, chunk) + (E + 3N) / 2`` (the local cross heads hold half the channels per
#: token edge of one chunk, the local graph heads a quarter per edge and self loop): the gathered
#: query, key and value rows, their product and the messages. Measured on Re-DocRED
#: concatenations (k = 16 to 256, hidden 384 and 768; no chunk needed there): 8.1-8.9 forward,
#: 14-20 forward + backward, node and token rows included.
SPARSE_BYTES_PER_EDGE_CHANNEL = {"forward": 9, "train": 18}
#: Sparse: bytes per (row x channel) over node and token rows ``N + T`` once chunking bounds the
#: per-edge part (projections, the global heads' outputs; with gradients, their gradients).
#: A margin: at k = 1024 (hidden 384, chunked) the edge term alone predicts the measured
#: forward (2.7 GB) and over-predicts forward + backward (5.4 GB against 5.0 GB).
SPARSE_BYTES_PER_ROW_CHANNEL = {"forward": 8, "train": 16}
#: Sparse: bytes per token edge for chunking (the sort order and the sorted edge index, int64).
SPARSE_BYTES_PER_TOKEN_EDGE = 32
#: Dense: bytes per element of the ``[heads, N, N]`` and ``[cross_heads, N, T]`` tensors: the
#: boolean masks (adjacency, its negation, the concatenated cross masks), scores, two masked
#: copies, softmax and the zero-filled result (about 18 B live at once in the forward pass);
#: autograd keeps probabilities and masks for backward. Measured at most 17 (forward) and 20
#: (forward + backward) including everything else; kept conservative.
DENSE_BYTES_PER_SCORE = {"forward": 24, "train": 32}
#: Allocator and thread-pool overhead of a first call.
FIXED_BYTES = 64 * MB


def live_edges(counts: dict, chunk: Optional[int] = CROSS_CHUNK_EDGES) -> float:
    """Token edges of one chunk plus graph edges and self loops, weighted by their share of
    channels: the edges whose per-edge rows the sparse layer holds at once."""
    token_edges = counts["num_token_edges"]
    if chunk is not None:
        token_edges = min(token_edges, chunk)
    return token_edges + (counts["num_edges"] + 3 * counts["num_nodes"]) / 2


def dense_scores(counts: dict, shape: LayerShape = LayerShape()) -> int:
    """Elements of one set of dense score matrices: ``heads * N^2 + cross_heads * N * T``."""
    n, t = counts["num_nodes"], counts["num_tokens"]
    return shape.graph_heads * n * n + shape.cross_heads * n * t


def estimate_bytes(mode: str, counts: dict, hidden: int, phase: str,
                   chunk: Optional[int] = CROSS_CHUNK_EDGES) -> int:
    """Predicted peak memory of one layer call over the post-setup baseline
    (``phase`` = ``"forward"`` or ``"train"``).

    Sparse memory is linear in graph edges, rows and token edges, with the token edges'
    per-edge rows bounded by one chunk: calibrated on measurements. Dense adds the
    ``[heads, N, N]`` and ``[cross_heads, N, T]`` score, probability and mask tensors it
    materialises, estimated conservatively.
    """
    rows = counts["num_nodes"] + counts["num_tokens"]
    total = (SPARSE_BYTES_PER_EDGE_CHANNEL[phase] * hidden * live_edges(counts, chunk)
             + SPARSE_BYTES_PER_ROW_CHANNEL[phase] * hidden * rows
             + SPARSE_BYTES_PER_TOKEN_EDGE * counts["num_token_edges"] + FIXED_BYTES)
    if MODES[mode][0] == "dense":
        total += DENSE_BYTES_PER_SCORE[phase] * dense_scores(counts)
    return int(total)


def memory_limit_bytes(fraction: float) -> int:
    return int(fraction * _common.meminfo_total_bytes())


def plan_point(mode: str, counts: dict, hidden: int, fraction: float, train_max_nodes: int,
               chunk: Optional[int] = CROSS_CHUNK_EDGES, total_bytes: Optional[int] = None
               ) -> tuple[bool, Optional[str], bool, Optional[str]]:
    """``(run, skip_reason, backward, backward_skip_reason)`` for one point: skip what is
    predicted to need more than ``fraction`` of the machine's RAM (or of ``total_bytes``, e.g.
    a GPU's memory)."""
    limit = (memory_limit_bytes(fraction) if total_bytes is None
             else int(fraction * total_bytes))
    memory = "RAM" if total_bytes is None else "the device's memory"
    est_fwd = estimate_bytes(mode, counts, hidden, "forward", chunk)
    est_train = estimate_bytes(mode, counts, hidden, "train", chunk)
    gb = 1024 ** 3
    if est_fwd > limit:
        return (False, f"skipped: estimated forward peak {est_fwd / gb:.1f} GB > "
                       f"{fraction:.0%} of {memory} ({limit / gb:.1f} GB)", False, None)
    if counts["num_nodes"] > train_max_nodes:
        return True, None, False, (f"forward+backward not run: {counts['num_nodes']:,} nodes > "
                                   f"--train-max-nodes {train_max_nodes:,}")
    if est_train > limit:
        return True, None, False, (f"forward+backward not run: estimated peak "
                                   f"{est_train / gb:.1f} GB > {fraction:.0%} of {memory} "
                                   f"({limit / gb:.1f} GB)")
    return True, None, True, None


def layer_and_inputs(attention: str, hidden: int, counts: dict, seed: int,
                     chunk: Optional[int] = CROSS_CHUNK_EDGES):
    """``(conv, x [N, hidden], token_x [T, hidden], grad_out [N, hidden])``: the measured layer
    (weights from ``seed``) and its random inputs (from ``seed + 1``), none requiring grad."""
    from pyg_docre.nn import GTNConv

    torch.manual_seed(seed)
    conv = GTNConv(hidden, attention=attention, cross_chunk_edges=chunk)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(counts["num_nodes"], hidden, generator=gen)
    token_x = torch.randn(counts["num_tokens"], hidden, generator=gen)
    grad_out = torch.randn(counts["num_nodes"], hidden, generator=gen)
    return conv, x, token_x, grad_out
