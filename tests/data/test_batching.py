"""A batch of documents has the same edges, pairs and labels as the documents one by one,
with indices offset; the homogeneous view is the concatenation of the per-document views."""
import pytest
import torch
from torch_geometric.loader import DataLoader

from pyg_docre.data import GRAPH_EDGE_TYPES, PAIR_EDGE_TYPE, TOKEN_EDGE_TYPES, build_hdg, to_gtn_inputs

INDICES = [3, 10, 11, 200, 499]


@pytest.fixture(scope="module")
def graphs(dev_docs, tokenizer, rel2id):
    return [build_hdg(dev_docs[i], tokenizer, rel2id) for i in INDICES]


@pytest.fixture(scope="module")
def batch(graphs):
    loader = DataLoader(graphs, batch_size=len(graphs), shuffle=False)
    return next(iter(loader))


def _offsets(graphs, node_type):
    counts = torch.tensor([0] + [g[node_type].num_nodes for g in graphs])
    return torch.cumsum(counts, 0)


def test_edges_pairs_and_labels_are_offset(graphs, batch):
    for edge_type in GRAPH_EDGE_TYPES + TOKEN_EDGE_TYPES + (PAIR_EDGE_TYPE,):
        src, _, dst = edge_type
        src_off, dst_off = _offsets(graphs, src), _offsets(graphs, dst)
        expected = torch.cat([
            g[edge_type].edge_index + torch.tensor([[src_off[i]], [dst_off[i]]])
            for i, g in enumerate(graphs)], dim=1)
        assert torch.equal(batch[edge_type].edge_index, expected), edge_type
    assert torch.equal(batch[PAIR_EDGE_TYPE].y, torch.cat([g[PAIR_EDGE_TYPE].y for g in graphs]))
    assert batch.title == [g.title for g in graphs]


def test_node_attributes_are_offset(graphs, batch):
    tok_off, ent_off = _offsets(graphs, "token"), _offsets(graphs, "entity")
    assert torch.equal(batch["mention"].token_index, torch.cat(
        [g["mention"].token_index + tok_off[i] for i, g in enumerate(graphs)]))
    assert torch.equal(batch["mention"].entity, torch.cat(
        [g["mention"].entity + ent_off[i] for i, g in enumerate(graphs)]))
    # Sentence ids stay local to their document.
    assert torch.equal(batch["mention"].sent, torch.cat([g["mention"].sent for g in graphs]))
    assert torch.equal(batch["token"].input_ids, torch.cat([g["token"].input_ids for g in graphs]))
    # Every mention's token_index still points at its marker in the batched token sequence.
    marker = batch["token"].input_ids[batch["mention"].token_index]
    assert bool((marker == graphs[0]["token"].input_ids[graphs[0]["mention"].token_index[0]]).all())


def test_homogeneous_view_of_one_document(graphs):
    g = graphs[0]
    v = to_gtn_inputs(g)
    n_m, n_e = g["mention"].num_nodes, g["entity"].num_nodes
    assert v.num_nodes == 1 + n_m + n_e
    assert v.document_pos.tolist() == [0]
    assert v.mention_pos.tolist() == list(range(1, 1 + n_m))
    assert v.entity_pos.tolist() == list(range(1 + n_m, 1 + n_m + n_e))
    assert v.node_entity.tolist() == [-1] + g["mention"].entity.tolist() + list(range(n_e))
    assert v.batch.tolist() == [0] * v.num_nodes
    # Edge types: 0 intra_entity, 1 intra_sentence, 2 document; no self loops.
    assert set(v.edge_type.tolist()) == {0, 1, 2}
    assert not bool((v.edge_index[0] == v.edge_index[1]).any())
    doc_edges = v.edge_index[:, v.edge_type == 2]
    assert int(doc_edges.size(1)) == 2 * (n_m + n_e)
    assert bool(((doc_edges[0] == 0) | (doc_edges[1] == 0)).all())
    # Each entity gets one sentence pair per mention.
    ent_pairs = v.sentence_index[:, v.sentence_index[0] >= 1 + n_m]
    assert ent_pairs.size(1) == n_m
    # Token edges: the document node sees every non-special token.
    doc_tokens = v.token_edge_index[0, v.token_edge_index[1] == 0]
    assert doc_tokens.numel() == int((g["token"].sent >= 0).sum())


def test_homogeneous_view_of_a_batch_concatenates_documents(graphs, batch):
    v = to_gtn_inputs(batch)
    singles = [to_gtn_inputs(g) for g in graphs]
    node_off = torch.cumsum(torch.tensor([0] + [s.num_nodes for s in singles]), 0)
    tok_off = _offsets(graphs, "token")
    assert torch.equal(v.batch, torch.cat([s.batch + i for i, s in enumerate(singles)]))
    assert torch.equal(v.node_entity, torch.cat([s.node_entity for s in singles]))
    for name in ("mention_pos", "entity_pos", "document_pos"):
        assert torch.equal(getattr(v, name),
                           torch.cat([getattr(s, name) + node_off[i] for i, s in enumerate(singles)]))

    def as_set(ei, et=None):
        rows = ei.t().tolist() if et is None else torch.cat([ei, et.view(1, -1)]).t().tolist()
        return sorted(map(tuple, rows))

    expected = torch.cat([torch.cat([s.edge_index + node_off[i], s.edge_type.view(1, -1)])
                          for i, s in enumerate(singles)], dim=1)
    assert as_set(v.edge_index, v.edge_type) == as_set(expected)
    expected_tok = torch.cat([s.token_edge_index + torch.tensor([[tok_off[i]], [node_off[i]]])
                              for i, s in enumerate(singles)], dim=1)
    assert as_set(v.token_edge_index) == as_set(expected_tok)
    expected_sent = torch.cat([s.sentence_index + torch.tensor([[node_off[i]], [0]])
                               for i, s in enumerate(singles)], dim=1)
    assert as_set(v.sentence_index) == as_set(expected_sent)
    assert torch.equal(v.token_batch, torch.cat(
        [torch.full((g["token"].num_nodes,), i) for i, g in enumerate(graphs)]))
